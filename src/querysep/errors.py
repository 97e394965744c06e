"""Typed exceptions with plain-language messages.

Library code raises these; the command-line interface turns each one into a single line on
stderr and exit code 2. Everything that is the user's fault (a bad file, a bad query, a bad
config) is a :class:`QuerysepError`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

__all__ = [
    "AudioError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelNotFoundError",
    "OutputError",
    "QueryError",
    "QuerysepError",
    "SilentAudioError",
    "TrainingError",
    "error_line",
]


class QuerysepError(Exception):
    """Base class of every error caused by input the user gave us."""


class AudioError(QuerysepError):
    """Audio that cannot be read, written or used (missing, corrupt, empty, NaN, odd rate)."""


class SilentAudioError(AudioError):
    """Audio with no sample above -100 dBFS: nothing to separate, and no sound to score."""


class QueryError(QuerysepError):
    """A text query that cannot be used (empty, whitespace only, far too long, one too few)."""


class ModelNotFoundError(QuerysepError):
    """A model name or path that resolves to nothing we can load."""


class CheckpointError(QuerysepError):
    """A weights file that does not fit the model (missing or unexpected keys, wrong shapes)."""


class ConfigError(QuerysepError):
    """A configuration file or override that is malformed or names unknown fields.

    Args:
        message: The whole one-line message.
        key: The dotted key at fault, when one is (``model.network.config.n_fft``).
        problem: The message without its location (``expected an integer, got 'many'``).
    """

    def __init__(self, message: str, *, key: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.key = key
        self.problem = problem

    def within(self, where: str = "", prefix: str = "") -> ConfigError:
        """The same error seen from an enclosing config.

        Args:
            where: The file or override the enclosing config came from.
            prefix: Dotted path of the failing config within the enclosing one.
        """
        if self.key is None or self.problem is None:
            if not prefix:
                return ConfigError(f"{where}: {self}" if where else str(self))
            key, problem = prefix, str(self)
        else:
            key = ".".join(part for part in (prefix, self.key) if part)
            problem = self.problem
        text = f"{key}: {problem}"
        return ConfigError(f"{where}: {text}" if where else text, key=key, problem=problem)


class DataError(QuerysepError):
    """A manifest, mixture list or dataset folder that is malformed or missing."""


class TrainingError(QuerysepError):
    """Training that cannot go on with these settings (its gradients keep being non-finite)."""


class OutputError(QuerysepError):
    """An output path that cannot be written (it is a folder, lies under a file, no space), or
    outputs that are not one path per query."""


#: How PyTorch re-raises in the main process an error raised in a DataLoader worker: the
#: same class, its message the worker's traceback, which ends ``module.Class: message``.
_WORKER = re.compile(r"Caught \w+ in DataLoader worker process \d+\.")
_RAISED = re.compile(r"[\w.]+: (.+)")


def error_line(exc: BaseException) -> str | None:
    """The one-line message for an error caused by the user's input, or None for a bug.

    What follows ``querysep: error:`` on the command line, and what the web app shows.
    """
    if isinstance(exc, QuerysepError):
        text = str(exc)
        if _WORKER.match(text):  # from a DataLoader worker: its traceback is the message
            found = _RAISED.match(text.rstrip().splitlines()[-1])
            text = found.group(1) if found else text
        return " ".join(text.split())
    # A path the user gave that the system refuses (missing, a folder or a file where the
    # other is needed, no permission, name too long, disk full) is named in the exception;
    # an OSError without a file name is not about the input: a bug.
    if isinstance(exc, OSError) and exc.filename is not None:
        return " ".join(f"{exc.strerror or exc}: {exc.filename}".split())
    return None
