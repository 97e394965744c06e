"""Overlap-add segmentation: exact length, unity gain, streaming equals one-shot."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from querysep.audio.chunking import OverlapAdd, apply_segmented


def _two_outputs(segment: torch.Tensor) -> torch.Tensor:
    return torch.stack([segment, -0.5 * segment])


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(1, 3000),
    segment=st.integers(8, 1200),
    overlap_frac=st.floats(0.0, 0.9),
    channels=st.integers(1, 3),
)
def test_identity_is_preserved_for_any_geometry(length, segment, overlap_frac, channels) -> None:
    overlap = min(segment - 1, int(segment * overlap_frac))
    x = torch.randn(channels, length, generator=torch.Generator().manual_seed(length))
    y = apply_segmented(_two_outputs, x, segment, overlap)
    assert y.shape == (2, channels, length)
    torch.testing.assert_close(y[0], x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[1], -0.5 * x, atol=1e-5, rtol=1e-5)


def test_segments_never_exceed_segment_length_and_last_has_full_context() -> None:
    seen: list[int] = []

    def record(seg: torch.Tensor) -> torch.Tensor:
        seen.append(seg.shape[-1])
        return seg[None]

    apply_segmented(record, torch.randn(1, 2550), segment=1000, overlap=200)
    assert max(seen) == 1000
    assert seen[-1] == 1000  # shifted back to end at the input's end, not a 150-sample stub


def test_short_input_is_processed_whole() -> None:
    calls: list[int] = []

    def fn(seg: torch.Tensor) -> torch.Tensor:
        calls.append(seg.shape[-1])
        return seg[None] * 2

    y = apply_segmented(fn, torch.ones(1, 300), segment=1000, overlap=100)
    assert calls == [300]
    torch.testing.assert_close(y, torch.full((1, 1, 300), 2.0))


def test_crossfade_blends_segments_without_jumps() -> None:
    # Each segment returns a constant equal to its own start index parity: the blend must
    # move smoothly between the two levels across the overlap, never step.
    counter = {"n": 0}

    def fn(seg: torch.Tensor) -> torch.Tensor:
        counter["n"] += 1
        return torch.full_like(seg, float(counter["n"] % 2))[None]

    y = apply_segmented(fn, torch.zeros(1, 5000), segment=1000, overlap=400)[0, 0]
    assert y.diff().abs().max() < 0.01  # 400-sample raised-cosine fades
    # Segment 1 (value 1) covers [0, 1000), segment 2 (value 0) [600, 1600), segment 3
    # (value 1) [1200, 2200): alone, a segment's value passes exactly; across an overlap the
    # output falls along a raised cosine sampled at sample centres.
    t = (torch.arange(400, dtype=torch.float64) + 0.5) / 400
    fade_in = (0.5 - 0.5 * torch.cos(torch.pi * t)).float()
    torch.testing.assert_close(y[:600], torch.ones(600), rtol=0, atol=1e-6)
    torch.testing.assert_close(y[600:1000], 1 - fade_in, rtol=0, atol=1e-6)
    torch.testing.assert_close(y[1000:1200], torch.zeros(200), rtol=0, atol=1e-6)
    torch.testing.assert_close(y[1200:1600], fade_in, rtol=0, atol=1e-6)


@pytest.mark.parametrize("block", [1, 77, 1000, 4096])
def test_streaming_blocks_equal_one_shot(block: int) -> None:
    x = torch.randn(2, 7001, generator=torch.Generator().manual_seed(3))

    def fn(seg: torch.Tensor) -> torch.Tensor:  # depends on the whole segment
        return (seg - seg.mean(dim=-1, keepdim=True))[None]

    ref = apply_segmented(fn, x, 1500, 300)
    proc = OverlapAdd(fn, 1500, 300)
    parts = [proc.push(x[:, i : i + block]) for i in range(0, x.shape[-1], block)]
    parts.append(proc.finish())
    got = torch.cat([p for p in parts if p.dim() == 3], dim=-1)
    torch.testing.assert_close(got, ref)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        OverlapAdd(lambda s: s[None], 100, 100)
    proc = OverlapAdd(lambda s: s[None], 100, 10)
    with pytest.raises(ValueError, match="no input"):
        proc.finish()


def test_segments_start_on_the_alignment_grid() -> None:
    starts: list[int] = []
    pos = {"n": 0}

    def fn(seg: torch.Tensor) -> torch.Tensor:
        starts.append(int(seg[0, 0].item()))
        pos["n"] += 1
        return seg[None]

    x = torch.arange(10_000, dtype=torch.float32)[None]
    y = apply_segmented(fn, x, segment=1000, overlap=150, align=64)
    torch.testing.assert_close(y[0], x)
    assert all(s % 64 == 0 for s in starts)
    assert starts[1] - starts[0] == 832  # hop 850 rounded down to the 64-sample grid
