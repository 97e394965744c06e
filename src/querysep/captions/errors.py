"""Errors of the caption augmentation job, each a one-line :class:`QuerysepError`.

The messages never hold the API key: the backend masks it out of anything a server says.
"""

from __future__ import annotations

from ..errors import ConfigError, QuerysepError

__all__ = [
    "AugmentStopped",
    "AuthenticationFailedError",
    "BackendError",
    "EndpointUnreachableError",
    "NoCaptionsError",
    "RequestRefusedError",
    "TemplateError",
    "UnknownModelError",
]


class TemplateError(ConfigError):
    """A prompt template file that is missing, empty or lacks a placeholder."""


class AugmentStopped(QuerysepError):  # noqa: N818 - a stop, not an error
    """The job was stopped (Ctrl-C, SIGTERM, another caption's failure) before this caption's
    answer was complete; nothing of it is cached."""


class BackendError(QuerysepError):
    """The language-model endpoint failed in a way that retrying will not mend."""


class EndpointUnreachableError(BackendError):
    """No answer from the endpoint (connection refused, timeouts, 5xx) after every retry."""


class AuthenticationFailedError(BackendError):
    """The endpoint refused the API key (HTTP 401 or 403)."""


class NoCaptionsError(BackendError):
    """Not one answer of a run held a usable caption (refusals, empty messages...)."""


class RequestRefusedError(BackendError):
    """The endpoint refused one request as such (a 4xx but 401/403/404 and 408/409/429)."""


class UnknownModelError(BackendError):
    """The endpoint does not know the model, or has no chat-completions route (HTTP 404)."""
