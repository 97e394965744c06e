"""Where separated outputs go: file names from queries, and the output plan of a run.

Shared by ``querysep separate`` and the web app, so both name files the same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import OutputError
from .fileio import refuse_overwriting

__all__ = ["MAX_NAME_BYTES", "RESIDUAL", "fit_stem", "plan_outputs", "query_slug"]


def query_slug(query: str, max_len: int = 60) -> str:
    """File-name-safe form of a query: ``"A dog, barking!"`` -> ``"a-dog-barking"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")
    return (slug[:max_len].rstrip("-")) or "query"


RESIDUAL = "residual"

#: Longest output file name made from an input's and a query's names, in UTF-8 bytes: file
#: systems allow 255 (a longer ``-o`` name of the user's own is written as given).
MAX_NAME_BYTES = 220


def fit_stem(stem: str, max_bytes: int) -> str:
    """``stem`` cut (at a character boundary) to at most ``max_bytes`` UTF-8 bytes."""
    cut = stem
    while cut and len(cut.encode("utf-8", "surrogateescape")) > max_bytes:
        cut = cut[:-1]
    return cut if cut == stem else cut.rstrip(" .-_") or "input"


#: Extensions of files that are not audio querysep writes: "-o notes.txt" is a mistake, not a
#: folder to create (other dotted names, "run.v2", "out.d", stay folder names).
NOT_AUDIO_OUTPUT = frozenset(
    (  # noqa: SIM905 (a word list reads better than thirty quoted lines)
        ".txt .csv .json .yaml .yml .md .html .pdf .png .jpg .jpeg .svg .npy .npz .pt .ckpt "
        ".safetensors .zip .tar .gz .mp4 .mov .mkv .avi .webm .m4a .aac .wma .mid .midi"
    ).split()
)


def plan_outputs(
    inputs: list[Path],
    queries: list[str],
    out: str | os.PathLike[str] | None,
    ext: str,
    residual: bool = False,
) -> list[list[Path]]:
    """Output path for each (input, query): ``out[i][q]``.

    ``out`` ending in a slash (a ``str``: a Path drops it) or naming an existing folder is a
    folder. Otherwise, one input, one query and ``out`` ending in an audio extension: exactly
    that file (its format must be one :func:`~querysep.audio.writer.supported_save_extensions`
    lists). Otherwise ``out`` is a folder (default ``separated/``) holding
    ``<stem>__<query>.<ext>``; a name ending in a known non-audio extension (``notes.txt``,
    ``clip.m4a``) is refused unless that folder exists.
    With ``residual``, each row ends with one more path, ``<stem>__residual.<ext>`` in the
    same folder (a query whose name would clash gets ``residual-2``).
    """
    from .audio.writer import supported_save_extensions  # imported here: `--help` stays fast
    from .data.manifest import AUDIO_EXTENSIONS

    # A name ending in any audio extension is a file; one the writer cannot produce here
    # (mp3 without an mp3-capable libsndfile) then fails with the writer's one-line error.
    if isinstance(out, str) and not out.strip():  # Path("") is "." (the current folder)
        raise OutputError("--output is empty: give a file or a folder")
    if out == "-":
        raise OutputError(
            "--output -: querysep does not write audio to standard output; give a file or a folder"
        )
    file_exts = {*supported_save_extensions(), *AUDIO_EXTENSIONS}
    slash = isinstance(out, str) and out.endswith(("/", os.sep))
    out = None if out is None else Path(out)
    folder_named = out is not None and (slash or out.is_dir())
    if out is not None and not folder_named and out.suffix.lower() in file_exts:
        if len(inputs) == 1 and len(queries) == 1:
            plan = [[out]]
            if residual:
                tail = f"__{RESIDUAL}{out.suffix}"
                stem = fit_stem(inputs[0].stem, MAX_NAME_BYTES - len(tail.encode()))
                rest = out.with_name(stem + tail)
                if rest == out:
                    raise OutputError(
                        f"--output {out} is the name of the residual: choose another output name"
                    )
                plan[0].append(rest)
        else:
            raise OutputError(
                f"--output {out} names one file, but {len(inputs)} input(s) x {len(queries)} "
                "query(ies) give several outputs: pass a folder instead"
            )
    elif out is not None and out.suffix.lower() in NOT_AUDIO_OUTPUT and not folder_named:
        # "-o notes.txt" would otherwise become a folder named notes.txt
        raise OutputError(
            f"--output {out}: {out.suffix} is not an audio format querysep writes "
            f"({', '.join(sorted(supported_save_extensions()))}); for a folder, end the name "
            "with /, give one without a suffix or create the folder first"
        )
    else:
        folder = out or Path("separated")
        slugs = [query_slug(q) for q in queries]
        slugs = _unique([RESIDUAL, *slugs]) if residual else _unique(slugs)
        longest = max(len(f"__{s}.{ext}".encode()) for s in slugs)
        stems = _unique([fit_stem(path.stem, MAX_NAME_BYTES - longest) for path in inputs])
        plan = [[folder / f"{stem}__{s}.{ext}" for s in slugs] for stem in stems]
        if residual:  # the reserved name first kept it; it goes last, as in the library
            plan = [[*row[1:], row[0]] for row in plan]
    refuse_overwriting([path for row in plan for path in row], inputs)
    return plan


def _unique(names: list[str]) -> list[str]:
    """``names`` with repeats suffixed ``-2``, ``-3``... (never clashing with another name)."""
    taken: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 2
        while candidate in taken or (candidate != name and candidate in names):
            candidate, n = f"{name}-{n}", n + 1
        taken.add(candidate)
        out.append(candidate)
    return out
