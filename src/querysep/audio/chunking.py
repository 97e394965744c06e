"""Segmented processing of long audio with overlap and crossfade.

A separator sees at most ``segment`` samples at once, so memory depends on the segment and
not on the file. Neighbouring segments overlap and are blended with raised-cosine weights
(normalised by the weight sum, so any overlap pattern sums to unity gain). The last segment
is shifted back to end exactly at the end of the input, so it has full context instead of a
stub; inputs shorter than one segment are processed whole. Output length always equals input
length.

:class:`OverlapAdd` is streaming (``push`` blocks, ``finish``), which is how files of any
length are processed; :func:`apply_segmented` is the one-shot form for in-memory tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["OverlapAdd", "apply_segmented"]

SegmentFn = Callable[[torch.Tensor], torch.Tensor]


def _ramp(length: int) -> torch.Tensor:
    """Raised-cosine fade-in of ``length`` samples, strictly inside (0, 1)."""
    t = (torch.arange(length, dtype=torch.float32) + 0.5) / length
    return 0.5 - 0.5 * torch.cos(math.pi * t)


class OverlapAdd:
    """Streaming segment-wise processor.

    Args:
        fn: Maps one segment ``(channels, n)`` to outputs ``(outputs, channels, n)``.
        segment: Segment length in samples.
        overlap: Overlap between consecutive segments in samples (``0 <= overlap < segment``).
        align: Every segment starts at a multiple of this many samples. A U-Net that pools
            STFT frames is not shift-invariant, so starting segments on its pooling grid
            (STFT hop x total time pooling) makes each segment see the frames the whole
            signal would. The hop is rounded down to a multiple of it (at least one ``align``).

    Shape:
        - pushed blocks: ``(channels, n)``
        - returned blocks: ``(outputs, channels, m)``; all returned blocks together have
          exactly as many samples as were pushed.
    """

    def __init__(self, fn: SegmentFn, segment: int, overlap: int, align: int = 1) -> None:
        if segment < 1:
            raise ValueError(f"segment must be at least 1 sample, got {segment}")
        if not 0 <= overlap < segment:
            raise ValueError(f"overlap must be in [0, segment), got {overlap} for {segment}")
        if align < 1:
            raise ValueError(f"align must be at least 1, got {align}")
        self.fn = fn
        self.segment = segment
        self.align = align
        self.hop = max(align, (segment - overlap) // align * align)
        self.overlap = max(0, segment - self.hop)
        self._ramp = _ramp(self.overlap) if self.overlap > 0 else torch.ones(0)
        self._in = torch.zeros(0)
        self._in_start = 0  # absolute index of self._in[..., 0]
        self._total = 0  # samples pushed so far
        self._next = 0  # start of the next regular segment
        self._last_start = -1  # start of the last processed segment
        self._acc: torch.Tensor | None = None  # (outputs, channels, n) weighted sums
        self._wsum = torch.zeros(0)
        self._out_start = 0  # absolute index of self._acc[..., 0]
        self._finished = False

    # ------------------------------------------------------------------ internals
    def _window(self, length: int, fade_in: bool, fade_out: bool) -> torch.Tensor:
        w = torch.ones(length)
        n = min(self.overlap, length)
        if n and fade_in:
            w[:n] = self._ramp[:n] if n == self.overlap else _ramp(n)
        if n and fade_out:
            w[-n:] = torch.minimum(w[-n:], (self._ramp if n == self.overlap else _ramp(n)).flip(0))
        return w

    def _process(self, start: int, length: int, *, last: bool) -> None:
        seg = self._in[..., start - self._in_start : start - self._in_start + length]
        out = self.fn(seg).detach().to("cpu", torch.float32)
        if out.shape[-1] != length:
            raise RuntimeError(f"segment function returned {out.shape[-1]} samples for {length}")
        if self._acc is None:
            self._acc = torch.zeros(*out.shape[:-1], 0)
        w = self._window(length, fade_in=start > 0, fade_out=not last)
        end = start + length
        acc_end = self._out_start + self._acc.shape[-1]
        if end > acc_end:
            grow = end - acc_end
            self._acc = torch.cat([self._acc, self._acc.new_zeros(*self._acc.shape[:-1], grow)], -1)
            self._wsum = torch.cat([self._wsum, self._wsum.new_zeros(grow)])
        a, b = start - self._out_start, end - self._out_start
        self._acc[..., a:b] += out * w
        self._wsum[a:b] += w
        self._last_start = start

    def _emit(self, upto: int) -> torch.Tensor:
        """Return finished output before absolute index ``upto`` and drop it from the state."""
        assert self._acc is not None
        n = max(0, min(upto - self._out_start, self._acc.shape[-1]))
        done = self._acc[..., :n] / self._wsum[:n].clamp_min(1e-8)
        self._acc = self._acc[..., n:].clone()
        self._wsum = self._wsum[n:].clone()
        self._out_start += n
        return done

    def _trim_input(self, keep_from: int) -> None:
        drop = keep_from - self._in_start
        if drop > 0:
            self._in = self._in[..., drop:].clone()
            self._in_start = keep_from

    # ------------------------------------------------------------------ public
    def push(self, block: torch.Tensor) -> torch.Tensor:
        """Add input samples; return the output that can no longer change.

        Shape:
            - block: ``(channels, n)``
            - output: ``(outputs, channels, m)``, possibly ``m == 0``; an empty 1-d tensor
              before the first segment has been processed
        """
        if self._finished:
            raise RuntimeError("push() after finish()")
        block = block.detach().to("cpu", torch.float32)
        self._in = block if self._in.numel() == 0 else torch.cat([self._in, block], dim=-1)
        self._total += block.shape[-1]
        # A regular segment is processed only once a sample beyond it has arrived, so we
        # know it is not the last one (the last one gets no fade-out).
        while self._total > self._next + self.segment:
            self._process(self._next, self.segment, last=False)
            self._next += self.hop
        if self._acc is None:
            return torch.zeros(0)
        # The final segment may start anywhere from the last processed start on.
        self._trim_input(self._last_start)
        return self._emit(self._last_start)

    def finish(self) -> torch.Tensor:
        """Process what is left and return the rest of the output.

        Shape:
            - output: ``(outputs, channels, m)``
        """
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        if self._total == 0:
            raise ValueError("no input was pushed")
        start = max(0, self._total - self.segment) // self.align * self.align
        if self._last_start >= 0:
            start = max(start, self._last_start)
        self._process(start, self._total - start, last=True)
        out = self._emit(self._total)
        self._in = torch.zeros(0)
        return out


def apply_segmented(
    fn: SegmentFn, audio: torch.Tensor, segment: int, overlap: int, align: int = 1
) -> torch.Tensor:
    """Run ``fn`` over ``audio`` segment by segment with crossfaded overlaps.

    Args:
        fn: Maps ``(channels, n)`` to ``(outputs, channels, n)``.
        audio: Input signal.
        segment: Segment length in samples; inputs shorter than this are processed whole.
        overlap: Overlap of consecutive segments in samples.
        align: Segment starts are multiples of this (see :class:`OverlapAdd`).

    Returns:
        The blended outputs, exactly as long as ``audio``.

    Shape:
        - audio: ``(channels, time)``
        - output: ``(outputs, channels, time)``
    """
    proc = OverlapAdd(fn, segment, overlap, align)
    parts = [proc.push(audio), proc.finish()]
    return torch.cat([p for p in parts if p.dim() == 3], dim=-1)
