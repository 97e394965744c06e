"""Factories of synthetic audio and tiny configurations used by the tests (and by users' tests)."""

from . import synth

__all__ = ["synth"]
