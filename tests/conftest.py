"""Fixtures shared across test folders."""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("diffusers") is not None:
    from tests.ldm_support import identity_ldm, tiny_ldm  # noqa: F401  (session fixtures)
