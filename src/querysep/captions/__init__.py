"""Caption augmentation (System 1 of Xiao et al., DCASE 2024 Task 9): each training
caption, with its clip's keywords, becomes 5 new captions written by a language model or
by the offline paraphraser.

* :mod:`.prompt`: the report's prompt as a template file, and the re-ask message;
* :mod:`.validate`: parsing a numbered answer and the caption rules;
* :mod:`.backends`: an OpenAI-compatible endpoint (retries, rate limit) and the offline one;
* :mod:`.paraphrase` and :mod:`.lexicon`: the rule-based paraphraser and its word tables;
* :mod:`.cache`: the append-only answer cache that makes a killed run resumable;
* :mod:`.job`: the batch job behind ``querysep augment``.
"""

from __future__ import annotations

from .backends import Answer, OfflineBackend, OpenAIBackend, RateLimiter, RetryPolicy
from .cache import AnswerCache, cache_key
from .errors import (
    AugmentStopped,
    AuthenticationFailedError,
    BackendError,
    EndpointUnreachableError,
    NoCaptionsError,
    RequestRefusedError,
    TemplateError,
    UnknownModelError,
)
from .job import Estimate, Summary, estimate, plan_items, run_job
from .paraphrase import paraphrase
from .prompt import PromptTemplate, clip_keywords, load_template
from .validate import Rejection, check_caption, parse_numbered, validate_captions

__all__ = [
    "Answer",
    "AnswerCache",
    "AugmentStopped",
    "AuthenticationFailedError",
    "BackendError",
    "EndpointUnreachableError",
    "Estimate",
    "NoCaptionsError",
    "OfflineBackend",
    "OpenAIBackend",
    "PromptTemplate",
    "RateLimiter",
    "Rejection",
    "RequestRefusedError",
    "RetryPolicy",
    "Summary",
    "TemplateError",
    "UnknownModelError",
    "cache_key",
    "check_caption",
    "clip_keywords",
    "estimate",
    "load_template",
    "paraphrase",
    "parse_numbered",
    "plan_items",
    "run_job",
    "validate_captions",
]
