"""Separation metrics, computed exactly as the DCASE 2024 Task 9 evaluator does.

The challenge's ``utils.py`` defines SDR with its power terms floored at ``1e-10`` and
SI-SDR with the input dtype's machine epsilon as regulariser; both are reproduced here
(vectorised over leading dimensions, and for numpy or torch input). :func:`get_metrics`
is the one entry point the evaluation code uses: a flat dict that includes the mixture's
own scores, so the improvements come for free.

Arithmetic always runs in float64; only the epsilon of SI-SDR follows the input dtype, as
upstream. For float64 input the numbers match upstream exactly; for float32 input they
differ from upstream's float32 arithmetic by float32 rounding only (ours are closer to the
exact value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .audio.io import silent_rows
from .errors import AudioError, ConfigError

__all__ = ["SDR_FLOOR", "get_metrics", "sdr", "sdri", "si_sdr"]

Signal = np.ndarray | torch.Tensor
"""A waveform as a numpy array or a torch tensor, time last."""
Score = float | np.ndarray | torch.Tensor
"""A Python float for one numpy signal, a float64 array for a numpy batch, a float64 tensor
for torch input."""

SDR_FLOOR = 1e-10
"""Floor applied to the mean powers in :func:`sdr` (upstream's ``np.clip(..., 1e-10)``)."""


_NOT_REAL = {"O": "objects", "U": "text", "S": "bytes", "c": "complex numbers", "M": "dates"}


def _signal(x: Any) -> np.ndarray | torch.Tensor:
    """``x`` as an array (a tensor stays one), refused unless it holds real numbers.

    Raises:
        AudioError: ``x`` is None, ragged, or holds text, objects or complex numbers.
    """
    what = "signals must be arrays or tensors of real numbers, got"
    if isinstance(x, torch.Tensor):
        if x.dtype.is_complex:
            raise AudioError(f"{what} Tensor holding complex numbers ({x.dtype})")
        return x
    try:
        array = np.asarray(x)
    except (TypeError, ValueError):  # rows of different lengths
        raise AudioError(f"{what} {type(x).__name__} that is not a rectangular array") from None
    if array.dtype.kind not in "biuf":  # bool, integers, floats
        held = _NOT_REAL.get(array.dtype.kind, str(array.dtype))
        raise AudioError(
            f"{what} None" if x is None else f"{what} {type(x).__name__} holding {held}"
        )
    return array


def _prepare(*signals: Any, eps_of: int = 0) -> tuple[bool, list[Any], float]:
    """Check shapes, pick the backend, cast to float64 and find the epsilon of the reference.

    The epsilon is that of ``signals[eps_of]``'s dtype (float64 for integers), as the DCASE
    evaluator takes ``np.finfo(reference.dtype).eps``.

    Raises:
        AudioError: A signal is None, ragged or not real numbers (text, complex), the shapes
            differ, or the time axis is missing or empty.
    """
    use_torch = any(isinstance(x, torch.Tensor) for x in signals)
    signals = tuple(_signal(x) for x in signals)
    shapes = [tuple(x.shape) for x in signals]
    if any(shape != shapes[0] for shape in shapes):
        raise AudioError(
            "reference, estimate (and mixture) must have the same shape, got "
            + ", ".join(str(shape) for shape in shapes)
        )
    if not shapes[0] or shapes[0][-1] == 0:
        raise AudioError(f"signals must have a non-empty time axis (last), got {shapes[0]}")
    if use_torch:
        device = next(x.device for x in signals if isinstance(x, torch.Tensor))
        # numpy input next to torch input: a copy torch can share (a read-only or reversed
        # view cannot be; torch warns about the one and refuses the other)
        tensors = [
            torch.as_tensor(x if isinstance(x, torch.Tensor) else np.array(x), device=device)
            for x in signals
        ]
        dtype = tensors[eps_of].dtype
        eps = torch.finfo(dtype if dtype.is_floating_point else torch.float64).eps
        return True, [t.to(torch.float64) for t in tensors], float(eps)
    arrays = [np.asarray(x) for x in signals]
    dtype = arrays[eps_of].dtype
    eps = np.finfo(dtype if np.issubdtype(dtype, np.floating) else np.float64).eps
    return False, [a.astype(np.float64, copy=False) for a in arrays], float(eps)


def _finish(value: Any, use_torch: bool) -> Score:
    if use_torch:
        return value
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value


def _log10(x: Any, use_torch: bool) -> Any:
    return torch.log10(x) if use_torch else np.log10(x)


def _floor(x: Any, use_torch: bool) -> Any:
    return torch.clamp(x, min=SDR_FLOOR) if use_torch else np.maximum(x, SDR_FLOOR)


def _sdr(reference: Any, estimate: Any, use_torch: bool) -> Any:
    signal = _floor((reference**2).mean(-1), use_torch)
    error = _floor(((estimate - reference) ** 2).mean(-1), use_torch)
    return 10.0 * _log10(signal / error, use_torch)


def _si_sdr(reference: Any, estimate: Any, eps: float, use_torch: bool) -> Any:
    alpha = (eps + (reference * estimate).sum(-1)) / ((reference * reference).sum(-1) + eps)
    target = alpha[..., None] * reference
    residual = estimate - target
    return 10.0 * _log10((eps + (target**2).sum(-1)) / (eps + (residual**2).sum(-1)), use_torch)


def sdr(reference: Signal, estimate: Signal) -> Score:
    """Signal-to-distortion ratio in dB, as the DCASE 2024 Task 9 evaluator computes it.

    ``10 * log10(max(mean(s**2), 1e-10) / max(mean((e - s)**2), 1e-10))``. As upstream, the
    floor is applied to the mean powers (not the sums), so a silent reference scores
    ``10 * log10(1e-10 / error_power)`` and a perfect estimate of a non-silent reference is
    capped at ``10 * log10(signal_power / 1e-10)``.

    Args:
        reference: Clean target signal ``s``.
        estimate: Estimated signal ``e``.

    Returns:
        One score per signal: a Python float for a single numpy signal, a float64 array for
        a numpy batch, a float64 tensor (on the input device) for torch input.

    Raises:
        AudioError: A signal is not real numbers (None, ragged, text, complex), the
            shapes differ, or the time axis is missing or empty.

    Shape:
        - reference, estimate: ``(..., time)``, equal shapes
        - output: ``(...)``
    """
    use_torch, (ref, est), _ = _prepare(reference, estimate)
    return _finish(_sdr(ref, est, use_torch), use_torch)


def si_sdr(reference: Signal, estimate: Signal) -> Score:
    """Scale-invariant SDR in dB, as the DCASE 2024 Task 9 evaluator computes it.

    With ``eps`` the machine epsilon of the input dtype (``np.finfo(dtype).eps``: 1.19e-7
    for float32, 2.2e-16 for float64; float64's for integer input)::

        alpha = (eps + <s, e>) / (<s, s> + eps)
        si_sdr = 10 * log10((eps + |alpha s|**2) / (eps + |e - alpha s|**2))

    Args:
        reference: Clean target signal ``s``.
        estimate: Estimated signal ``e``.

    Returns:
        One score per signal, typed as for :func:`sdr`.

    Raises:
        AudioError: A signal is not real numbers (None, ragged, text, complex), the
            shapes differ, or the time axis is missing or empty.

    Shape:
        - reference, estimate: ``(..., time)``, equal shapes
        - output: ``(...)``
    """
    use_torch, (ref, est), eps = _prepare(reference, estimate)
    return _finish(_si_sdr(ref, est, eps, use_torch), use_torch)


def sdri(reference: Signal, estimate: Signal, mixture: Signal) -> Score:
    """SDR improvement in dB: ``sdr(reference, estimate) - sdr(reference, mixture)``.

    Args:
        reference: Clean target signal.
        estimate: Estimated signal.
        mixture: The mixture the estimate was separated from.

    Returns:
        One score per signal, typed as for :func:`sdr`.

    Raises:
        AudioError: A signal is not real numbers (None, ragged, text, complex), the
            shapes differ, or the time axis is missing or empty.

    Shape:
        - reference, estimate, mixture: ``(..., time)``, equal shapes
        - output: ``(...)``
    """
    use_torch, (ref, est, mix), _ = _prepare(reference, estimate, mixture)
    return _finish(_sdr(ref, est, use_torch) - _sdr(ref, mix, use_torch), use_torch)


def get_metrics(
    mixture: Signal,
    reference: Signal,
    estimate: Signal,
    *,
    query: str | None = None,
    clap: Any = None,
    sample_rate: float | None = None,
) -> dict[str, float | np.ndarray]:
    """Every separation score of an estimate in one flat dict.

    Keys: ``sdr``, ``sdri``, ``si_sdr``, ``si_sdri`` for the estimate, and ``input_sdr``,
    ``input_si_sdr`` for the mixture itself (the improvements are the differences). With a
    ``query``, an audio-text model ``clap`` and the ``sample_rate``, also ``ats`` (the
    cosine of the CLAP embeddings of the estimate and the query, the DCASE 2024 Task 9
    report's ATS) and ``input_ats`` (the mixture's); NaN for a silent signal.

    Like every other score, ATS is computed per signal: each row along the time axis is
    scored on its own, so a ``(channels, time)`` or ``(batch, channels, time)`` input gets
    one ATS per channel (NaN for a silent channel: use ``np.nanmean`` to pool them). For one
    mono score per clip (as :meth:`querysep.Separator.ats` gives), average the channels first
    (``x.mean(-2)``).

    Args:
        mixture: The mixture the estimate was separated from.
        reference: Clean target signal.
        estimate: Estimated signal.
        query: The text query (for ATS).
        clap: A :class:`querysep.clap.AudioTextModel` (for ATS).
        sample_rate: Rate of the signals in Hz, a whole number (for ATS).

    Returns:
        ``{name: score}``, Python floats for single signals and float64 numpy arrays for
        batches, whether the input is numpy or torch (torch results are moved to the CPU).

    Raises:
        AudioError: A signal is not real numbers (None, ragged, text, complex), the shapes
            differ, the time axis is missing or empty, or (for ATS) the sample rate is not a
            whole number of Hz in range.
        ConfigError: Some but not all of ``query``, ``clap`` and ``sample_rate`` given.
        QueryError: An empty or overlong ``query``.

    Shape:
        - mixture, reference, estimate: ``(..., time)``, equal shapes
        - each value, ``ats`` and ``input_ats`` included: ``(...)``
    """
    use_torch, (mix, ref, est), eps = _prepare(mixture, reference, estimate, eps_of=1)
    scores = {
        "sdr": _sdr(ref, est, use_torch),
        "si_sdr": _si_sdr(ref, est, eps, use_torch),
        "input_sdr": _sdr(ref, mix, use_torch),
        "input_si_sdr": _si_sdr(ref, mix, eps, use_torch),
    }
    if use_torch:
        scores = {name: value.detach().cpu().numpy() for name, value in scores.items()}
    result = {
        "sdr": scores["sdr"],
        "sdri": scores["sdr"] - scores["input_sdr"],
        "si_sdr": scores["si_sdr"],
        "si_sdri": scores["si_sdr"] - scores["input_si_sdr"],
        "input_sdr": scores["input_sdr"],
        "input_si_sdr": scores["input_si_sdr"],
    }
    out = {name: _finish(value, False) for name, value in result.items()}
    given = {"query": query, "clap": clap, "sample_rate": sample_rate}
    if any(value is not None for value in given.values()):
        missing = [name for name, value in given.items() if value is None]
        if missing:
            raise ConfigError(
                f"ATS needs query, clap and sample_rate together; missing: {', '.join(missing)}"
            )
        out.update(ats_scores(clap, [estimate, mixture], sample_rate, query, ("ats", "input_ats")))
    return out


def ats_scores(
    clap: Any, signals: list[Signal], sample_rate: float, query: str, names: tuple[str, ...]
) -> dict[str, float | np.ndarray]:
    """ATS of each signal against ``query``, under ``names``: one score per row along the
    time axis (each channel on its own), NaN for a silent row.

    Shape:
        - each signal: ``(..., time)``
        - each value: ``(...)``, a Python float for ``(time,)``
    """
    text = clap.embed_text([query])[0]
    out: dict[str, float | np.ndarray] = {}
    for name, signal in zip(names, signals, strict=True):
        if isinstance(signal, torch.Tensor):
            signal = signal.detach().to("cpu", torch.float32).numpy()
        arr = np.asarray(signal, dtype=np.float32)
        rows = arr.reshape(-1, arr.shape[-1])
        scores = np.empty(0)
        if len(rows):
            scores = (clap.embed_audio(rows, sample_rate) @ text).double().numpy()
            scores = np.where(silent_rows(rows, len(rows)), np.nan, scores)  # silence: no ATS
        out[name] = float(scores[0]) if arr.ndim == 1 else scores.reshape(arr.shape[:-1])
    return out
