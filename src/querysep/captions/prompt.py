"""Prompt templates: the report's prompt, filled with a caption and its keywords.

A template is a UTF-8 text file holding ``{caption}`` (required) and ``{keywords}``
(optional) placeholders; every other character, braces included, is sent as it is. The
default, ``templates/report.txt``, is the prompt of Xiao et al. (DCASE 2024 Task 9) word
for word, followed by the description and the tags::

    ...Start each output sentence with its index.
    Description: {caption}
    Tags: {keywords}
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..data.manifest import Clip, label_to_text
from ..textfiles import read_text
from .errors import TemplateError

__all__ = [
    "DEFAULT_TEMPLATE",
    "PLACEHOLDERS",
    "PromptTemplate",
    "clip_keywords",
    "follow_up_prompt",
    "format_keywords",
    "load_template",
]

#: File name of the report's prompt inside the package's ``templates`` folder.
DEFAULT_TEMPLATE = "report.txt"

#: The placeholders a template may hold.
PLACEHOLDERS = ("caption", "keywords")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class PromptTemplate:
    """A checked prompt template.

    Attributes:
        text: The template text with its placeholders.
        name: Where it came from (a path, or ``report.txt`` for the default), for messages.
    """

    text: str
    name: str

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise TemplateError(f"prompt template {self.name} is empty")
        found = set(_PLACEHOLDER.findall(self.text))
        unknown = sorted(found - set(PLACEHOLDERS))
        if unknown:
            raise TemplateError(
                f"prompt template {self.name}: unknown placeholder {{{unknown[0]}}} "
                "(known: {caption}, {keywords})"
            )
        if "caption" not in found:
            raise TemplateError(f"prompt template {self.name} has no {{caption}} placeholder")

    @property
    def sha256(self) -> str:
        """Hash of the template text (part of every cache key)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, caption: str, keywords: list[str]) -> str:
        """The prompt for one caption.

        Args:
            caption: The caption to rewrite.
            keywords: The clip's keywords (see :func:`clip_keywords`).

        Returns:
            The template with both placeholders filled in.
        """
        values = {"caption": caption, "keywords": format_keywords(keywords)}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text).strip() + "\n"


def load_template(path: str | os.PathLike[str] | None = None) -> PromptTemplate:
    """Load a template file, or the report's prompt shipped with querysep.

    Args:
        path: The template file (``None``: the default).

    Returns:
        The checked template.

    Raises:
        TemplateError: The file is missing, unreadable, not UTF-8, empty, lacks the
            ``{caption}`` placeholder or holds an unknown one.
    """
    if path is None:
        files = resources.files("querysep.captions") / "templates" / DEFAULT_TEMPLATE
        return PromptTemplate(files.read_text(encoding="utf-8"), DEFAULT_TEMPLATE)
    text = read_text(Path(path), "prompt template", error=TemplateError)
    return PromptTemplate(text, str(path))


def clip_keywords(clip: Clip) -> list[str]:
    """A clip's keywords, or its labels as text when it has none."""
    if clip.keywords:
        return [" ".join(k.split()) for k in clip.keywords if k.strip()]
    return [label_to_text(label) for label in clip.labels if label.strip()]


def format_keywords(keywords: list[str]) -> str:
    """Keywords as the prompt shows them: ``"dog, animal"`` (``"none"`` when empty)."""
    return ", ".join(keywords) if keywords else "none"


def follow_up_prompt(missing: int, kept: list[str], problems: list[str]) -> str:
    """The re-ask message: only the captions still missing, without repeating kept ones.

    Args:
        missing: How many captions are still needed.
        kept: The captions accepted so far.
        problems: Why earlier answers were refused (one short reason each).

    Returns:
        The text of the next user message.
    """
    lines = []
    if problems:
        reasons = "; ".join(dict.fromkeys(problems))
        lines.append(f"Some captions broke the rules ({reasons}).")
    plural = "caption" if missing == 1 else "captions"
    lines.append(
        f"Write {missing} more audio {plural} for the same description, following every "
        "rule above. Start each output sentence with its index."
    )
    if kept:
        lines.append("Do not repeat these: " + " | ".join(kept))
    return "\n".join(lines) + "\n"
