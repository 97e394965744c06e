"""Room and recording-chain effects for training mixtures: synthetic reverberation and EQ.

Both are linear filters applied to each source *before* mixing, so a mixture stays exactly
the sum of its target and its interference: the target a model learns to return is the
query's sound as the mixture holds it (reverberant, coloured), never a dry copy it could
not have heard. Reverberation gives each source its own impulse response (its own position
in one room: one decay time, its own direct-to-reverberant ratio); EQ colours every source
of a mixture alike (one microphone, one recording chain).

The impulse responses are synthetic (exponentially decaying Gaussian noise after a direct
path), not measured rooms: they teach the network that a sound may arrive smeared in time,
with no claim to match any real room.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

#: Lowest EQ control frequency in Hz; the gain below it is held at its value there.
EQ_LOW_HZ = 50.0
#: Control points of the random EQ curve, log-spaced from :data:`EQ_LOW_HZ` to Nyquist.
EQ_POINTS = 6
#: Zero padding behind each source for the EQ, in seconds: its response (a smooth curve
#: over log-frequency) has decayed long before, so nothing wraps into the kept samples.
EQ_PAD_SECONDS = 0.25
#: The tail of a synthetic impulse response starts this long after its direct path.
REVERB_ONSET_SECONDS = 0.0025
#: Limits of the settings (also those of the training config's ``data`` section).
RT60_LIMITS = (0.05, 3.0)
DRR_DB_LIMITS = (-20.0, 30.0)
MAX_EQ_DB = 24.0


@dataclass(frozen=True)
class EffectsPlan:
    """The effects drawn for one mixture (see :meth:`Effects.draw`).

    Attributes:
        rt60: Reverberation time in seconds (60 dB decay), or ``None``: dry.
        drr_db: Direct-to-reverberant energy ratio of each source's impulse response, in
            dB, one per source (empty when dry).
        eq_db: EQ gains in dB at the :data:`EQ_POINTS` control frequencies, or ``None``.
        seed: Seed of the generator that draws the impulse responses' noise.
    """

    rt60: float | None = None
    drr_db: tuple[float, ...] = ()
    eq_db: tuple[float, ...] | None = None
    seed: int = 0

    def apply(self, signals: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Apply these effects to each source (target first), each keeping its length.

        Each source takes one FFT there and back: its impulse response's spectrum and the
        EQ curve are multiplied in on a grid long enough that the convolution is linear
        (causal, cut to the source's length) and the zero-phase EQ's short response does
        not wrap around into the kept samples.

        Shape:
            - signals: each ``(time,)``, all of one length
            - output: each ``(time,)`` float32
        """
        out = [np.asarray(s, dtype=np.float32) for s in signals]
        if (self.rt60 is None and self.eq_db is None) or not out or out[0].shape[-1] == 0:
            return out
        n = out[0].shape[-1]
        rirs: list[np.ndarray] = []
        if self.rt60 is not None:
            if len(self.drr_db) != len(out):
                raise ValueError(f"{len(self.drr_db)} DRRs drawn for {len(out)} sources")
            rng = np.random.Generator(np.random.PCG64(self.seed))
            rirs = [synthetic_rir(rng, sample_rate, self.rt60, drr) for drr in self.drr_db]
        # room for the impulse responses, and for the EQ's response to decay
        size = fast_fft_size(n + max([round(EQ_PAD_SECONDS * sample_rate), *map(len, rirs)]))
        eq = None if self.eq_db is None else eq_curve(size, sample_rate, self.eq_db)
        for k, signal in enumerate(out):
            spec = np.fft.rfft(signal, size)
            if rirs:
                spec *= np.fft.rfft(rirs[k], size)
            if eq is not None:
                spec *= eq
            out[k] = np.fft.irfft(spec, size)[:n].astype(np.float32)
        return out


@dataclass(frozen=True)
class Effects:
    """Random reverberation and EQ for training mixtures; all off by default.

    Args:
        reverb_prob: Probability that a mixture is reverberant.
        rt60: ``(low, high)`` reverberation time in seconds, drawn uniformly.
        drr_db: ``(low, high)`` direct-to-reverberant ratio in dB, drawn per source.
        eq_prob: Probability that a mixture is coloured by a random EQ.
        eq_db: Largest EQ gain (or cut) in dB at each control point.

    Raises:
        ConfigError: A probability outside [0, 1], a range with low > high, an RT60
            outside 0.05..3 s, a DRR outside -20..30 dB or an EQ gain outside 0..24 dB.
    """

    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.2, 1.0)
    drr_db: tuple[float, float] = (0.0, 12.0)
    eq_prob: float = 0.0
    eq_db: float = 6.0

    def __post_init__(self) -> None:
        for name in ("reverb_prob", "eq_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name, (lo, hi) in (("rt60", RT60_LIMITS), ("drr_db", DRR_DB_LIMITS)):
            low, high = getattr(self, name)
            if not lo <= low <= high <= hi:
                raise ConfigError(
                    f"{name} must be (low, high) with {lo:g} <= low <= high <= {hi:g}, "
                    f"got {getattr(self, name)}"
                )
        if not 0.0 <= self.eq_db <= MAX_EQ_DB:
            raise ConfigError(f"eq_db must be in [0, {MAX_EQ_DB:g}], got {self.eq_db}")

    @property
    def active(self) -> bool:
        """Whether any effect can be drawn (when not, :meth:`draw` draws nothing)."""
        return self.reverb_prob > 0.0 or self.eq_prob > 0.0

    def draw(self, rng: np.random.Generator, sources: int) -> EffectsPlan:
        """Draw one mixture's effects for ``sources`` sources (target first).

        Draws no random number when no effect is active, so the items of a dataset
        without effects are those of earlier versions.
        """
        if not self.active:
            return EffectsPlan()
        rt60, drr, eq = None, (), None
        if float(rng.random()) < self.reverb_prob:
            rt60 = float(rng.uniform(*self.rt60))
            drr = tuple(float(v) for v in rng.uniform(*self.drr_db, size=sources))
        if float(rng.random()) < self.eq_prob:
            eq = tuple(float(v) for v in rng.uniform(-self.eq_db, self.eq_db, size=EQ_POINTS))
        return EffectsPlan(rt60=rt60, drr_db=drr, eq_db=eq, seed=int(rng.integers(2**63)))


def fast_fft_size(n: int) -> int:
    """The smallest length >= ``n`` whose only prime factors are 2, 3 and 5 (fast FFTs)."""
    best = 1 << max(0, n - 1).bit_length()
    five = 1
    while five < best:
        three = five
        while three < best:
            size = three << max(0, -(-n // three) - 1).bit_length()
            best = min(best, size)
            three *= 3
        five *= 5
    return best


def synthetic_rir(
    rng: np.random.Generator, sample_rate: int, rt60: float, drr_db: float
) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path, then decaying noise.

    The tail is Gaussian noise starting :data:`REVERB_ONSET_SECONDS` after the direct path,
    its amplitude falling 60 dB over ``rt60`` seconds, scaled so that the direct path's
    energy is ``drr_db`` above the tail's.

    Shape:
        - output: ``(round(rt60 * sample_rate),)`` float32 (at least the onset plus one)
    """
    onset = max(1, round(REVERB_ONSET_SECONDS * sample_rate))
    length = max(onset + 1, round(rt60 * sample_rate))
    t = np.arange(length - onset) / sample_rate
    tail = rng.standard_normal(length - onset) * np.exp(-math.log(1000.0) * t / rt60)
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / float(np.sum(tail**2)))
    rir = np.zeros(length, dtype=np.float64)
    rir[0] = 1.0
    rir[onset:] = tail
    return rir.astype(np.float32)


def eq_curve(size: int, sample_rate: int, gains_db: Sequence[float]) -> np.ndarray:
    """Linear gains on the rfft bins of a ``size``-point FFT (odd sizes too).

    The dB gains, given at ``len(gains_db)`` (:data:`EQ_POINTS` when drawn) control
    frequencies log-spaced from :data:`EQ_LOW_HZ` to Nyquist, are interpolated linearly
    in log-frequency and held flat beyond the end points.
    """
    control = np.log(np.geomspace(EQ_LOW_HZ, sample_rate / 2.0, len(gains_db)))
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    where = np.log(np.maximum(freqs, EQ_LOW_HZ))
    return 10.0 ** (np.interp(where, control, np.asarray(gains_db, dtype=np.float64)) / 20.0)
