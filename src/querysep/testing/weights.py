"""Deterministic test weights shared by the parity fixtures (ResUNet30, LAION-CLAP).

The fixtures under ``tests/fixtures/`` were computed by upstream code with these weights, so
the tests can rebuild them from a list of key names and shapes instead of shipping them.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["rule_weight"]


def rule_weight(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The fixtures' deterministic float32 weight for ``key``.

    A normal draw seeded with the first 32 bits of the SHA-256 of ``key``, then scaled:
    matrices by 1/sqrt(fan-in), running variances to 1 + |x|/4, other 1-d weights to
    1 + x/10, everything else (biases, running means, scalars) to x/20.
    """
    seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if len(shape) >= 2:
        x = x / (x.numel() // shape[0]) ** 0.5
    elif key.endswith("running_var"):
        x = 1.0 + 0.25 * x.abs()
    elif key.endswith(".weight"):
        x = 1.0 + 0.1 * x
    else:
        x = 0.05 * x
    return x.float()
