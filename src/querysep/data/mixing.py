"""Making mixtures: the DCASE evaluation protocol, mixture-list planning, training mixing.

* :func:`make_dcase_mixture` mixes a source and a noise clip at a given SNR exactly as the
  DCASE 2024 Task 9 evaluation does.
* :func:`row_files` and :func:`load_row_mixture` turn a mixture list row into its
  ``(mixture, target)``, for evaluation and validation alike.
* :func:`plan_mixtures` draws a DCASE mixture list (source, noise, SNR, caption) from a
  manifest, never pairing two clips that share a label.
* :class:`Mixer` mixes training examples on the fly: parameters are drawn from a random
  generator first (:meth:`Mixer.sample_params`), then applied (:meth:`Mixer.apply`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConfigError, DataError
from .manifest import MAX_ABS_SNR_DB, Clip, MixtureRow, find_audio

__all__ = [
    "CaptionChoice",
    "MixParams",
    "Mixer",
    "PartnerSampler",
    "fit_length",
    "load_row_mixture",
    "make_dcase_mixture",
    "plan_mixtures",
    "row_files",
]

CaptionChoice = Literal["first", "random"]

#: Most rows :func:`plan_mixtures` draws (DCASE lists have a few thousand).
MAX_MIXTURES = 1_000_000

#: Mixtures whose peak exceeds 1 are scaled (with their target) to this peak.
PEAK_AFTER_PROTECTION = 0.9


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Cut ``audio`` to ``length`` samples, or zero-pad it at the end.

    Shape:
        - audio: ``(..., time)``
        - output: ``(..., length)``
    """
    time = audio.shape[-1]
    if time >= length:
        return audio[..., :length]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, length - time)]
    return np.pad(audio, pad)


def _mean_power(audio: np.ndarray) -> np.ndarray:
    if audio.shape[-1] == 0:
        return np.zeros((*audio.shape[:-1], 1), dtype=np.float64)
    return np.mean(np.square(audio, dtype=np.float64), axis=-1, keepdims=True)


def make_dcase_mixture(
    source: np.ndarray, noise: np.ndarray, snr_db: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mix ``source`` and ``noise`` at ``snr_db`` following the DCASE 2024 Task 9 protocol.

    The noise is first cut to the source's length, or zero-padded at the end. It is then
    scaled so that ``mean(source**2) / mean(noise**2) == 10 ** (snr_db / 10)`` (mean power
    over the whole, fitted clip) and added to the source. If the mixture's peak exceeds 1,
    mixture and source are both multiplied by ``0.9 / peak``. A silent noise clip is treated
    as zero noise (no NaN); a silent source gives a silent mixture.

    Leading axes are independent signals (a batch): powers and peaks are taken along the
    last axis only.

    Args:
        source: The target sound.
        noise: The interfering sound.
        snr_db: Source-to-noise ratio in dB (a scalar, or an array broadcasting to
            ``source.shape[:-1]``).

    Returns:
        ``(mixture, source_scaled)``, in the source's floating dtype (float32 for
        integer input).

    Shape:
        - source: ``(..., time)``
        - noise: ``(..., time_noise)``, leading axes broadcasting to ``source``'s
        - output: two arrays of ``source.shape``
    """
    source = np.asarray(source)
    noise = np.asarray(noise)
    dtype = source.dtype if np.issubdtype(source.dtype, np.floating) else np.dtype(np.float32)
    src = source.astype(np.float64)
    noi = fit_length(noise.astype(np.float64), src.shape[-1])
    snr = np.asarray(snr_db, dtype=np.float64)
    if snr.ndim:
        snr = snr[..., None]
    source_power = _mean_power(src)
    noise_power = _mean_power(noi)
    target_power = source_power / np.power(10.0, snr / 10.0)
    safe_power = np.where(noise_power > 0.0, noise_power, 1.0)
    scale = np.where(noise_power > 0.0, np.sqrt(target_power / safe_power), 0.0)
    mixture = src + noi * scale
    gain = _peak_gain(mixture)
    if gain is not None:
        mixture, src = mixture * gain, src * gain
    return mixture.astype(dtype), src.astype(dtype)


# ------------------------------------------------------------------ mixture list rows


def row_files(
    row: MixtureRow, audio_dir: str | Path, *, found: dict[str, Path] | None = None
) -> tuple[Path, Path]:
    """The two audio files a mixture list row names, looked up with :func:`find_audio`.

    Args:
        row: A DCASE row (clips ``source`` and ``noise``, by id or by path under
            ``audio_dir``) or a triplet row (paths ``mixture`` and ``target``, relative to
            ``audio_dir``); the extension may be left out.
        audio_dir: Folder holding the clips.
        found: Name -> path of earlier look-ups, reused and filled in (many rows share
            clips).

    Returns:
        ``(source, noise)`` or ``(mixture, target)``.

    Raises:
        DataError: A file is missing, or named without extension beside another of that name.
    """
    names = (row.source, row.noise) if row.kind == "dcase" else (row.mixture, row.target)
    memo = found if found is not None else {}
    paths = []
    for name in map(str, names):
        if name not in memo:
            memo[name] = find_audio(audio_dir, name)
        paths.append(memo[name])
    return paths[0], paths[1]


def load_row_mixture(
    row: MixtureRow,
    files: tuple[Path, Path],
    sample_rate: int,
    *,
    load: Callable[[Path], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a mixture list row's two clips and build its ``(mixture, target)``.

    This is how evaluation and validation both see a row: each file is read as mono at
    ``sample_rate`` (resampled if needed); a DCASE row is then mixed by
    :func:`make_dcase_mixture` at the row's SNR (the noise cut or zero-padded to the
    source, the target being the source after the same peak protection), and a triplet
    row's mixture and target are cut to the shorter of the two.

    Args:
        row: The row.
        files: Its files, from :func:`row_files`.
        sample_rate: Rate of the returned audio, in Hz.
        load: Reads one file as float32 mono ``(time,)`` at ``sample_rate`` (e.g. a cache's
            ``get``); default :func:`querysep.audio.io.load_audio`.

    Returns:
        ``(mixture, target)``, float32.

    Raises:
        AudioError: A file cannot be read or holds unusable audio.

    Shape:
        - output: two arrays of shape ``(time,)``: the source's length (DCASE rows) or the
          shorter file's (triplet rows)
    """
    if load is None:

        def load(path: Path) -> np.ndarray:
            from ..audio.io import load_audio  # soxr and soundfile only when audio is read

            return load_audio(path, sample_rate, mono=True)[0][0]

    first, second = load(files[0]), load(files[1])
    if row.kind == "dcase":
        mixture, target = make_dcase_mixture(first, second, float(row.snr or 0.0))
    else:
        length = min(first.shape[-1], second.shape[-1])
        mixture, target = first[:length], second[:length]
    return mixture.astype(np.float32, copy=False), target.astype(np.float32, copy=False)


# ------------------------------------------------------------------------------ pairing


def _file_identity(path: str, folders: dict[str, str]) -> str:
    """``path`` with its folder resolved (``a//b``, ``a/./b``, linked folders) and the file
    itself if it is a symbolic link; ``folders`` memoises the folders (a large manifest has
    few), so each clip costs one ``lstat``."""
    head, tail = os.path.split(path)
    if head not in folders:
        folders[head] = os.path.realpath(head or ".")
    full = os.path.join(folders[head], tail)
    return os.path.realpath(full) if os.path.islink(full) else full


class PartnerSampler:
    """Draws, for a clip, another clip that shares no label with it.

    Clips without labels can be paired with any clip but themselves (and clips with the
    same audio file, however its path is spelled: ``a//b.wav``, ``a/./b.wav`` or a symbolic
    link to it count as ``a/b.wav``). Random draws are tried first; after ``max_tries``
    rejections the valid partners are listed exhaustively, so a rare valid partner is still
    found.
    """

    def __init__(self, clips: Sequence[Clip], *, max_tries: int = 32) -> None:
        self.clips = clips
        self.max_tries = max_tries
        self._labels = [frozenset(c.labels) for c in clips]
        folders: dict[str, str] = {}
        self._audio = [_file_identity(c.audio, folders) for c in clips]  # one file, one name
        self._by_label: dict[str, set[int]] = {}
        for i, labels in enumerate(self._labels):
            for label in labels:
                self._by_label.setdefault(label, set()).add(i)
        self._by_audio: dict[str, set[int]] = {}
        for i, audio in enumerate(self._audio):
            self._by_audio.setdefault(audio, set()).add(i)

    def compatible(self, i: int, j: int) -> bool:
        """Whether clips ``i`` and ``j`` may be mixed together."""
        return (
            i != j
            and self._audio[i] != self._audio[j]
            and self._labels[i].isdisjoint(self._labels[j])
        )

    def excluded(self, i: int) -> set[int]:
        """Indices that clip ``i`` must not be paired with (itself included)."""
        out = set(self._by_audio[self._audio[i]]) | {i}
        for label in self._labels[i]:
            out |= self._by_label[label]
        return out

    def has_partner(self, i: int) -> bool:
        """Whether clip ``i`` may be paired with any clip (stops at the first one found)."""
        return any(self.compatible(i, j) for j in range(len(self.clips)))

    def sample(
        self, i: int, rng: np.random.Generator, *, avoid: set[int] | None = None
    ) -> int | None:
        """Draw a partner of clip ``i`` uniformly, or ``None`` if it has none.

        ``avoid`` lists partners to skip when possible (used to avoid repeated pairs);
        it is ignored when every valid partner is in it.
        """
        n = len(self.clips)
        avoid = avoid or set()
        for _ in range(self.max_tries):
            j = int(rng.integers(n))
            if j not in avoid and self.compatible(i, j):
                return j
        excluded = self.excluded(i)
        valid = [j for j in range(n) if j not in excluded]
        if not valid:
            return None
        preferred = [j for j in valid if j not in avoid] or valid
        return preferred[int(rng.integers(len(preferred)))]


def too_short(clip: Clip) -> bool:
    """Whether ``clip`` is known (from its manifest ``duration``) to be too short to score."""
    from ..audio.io import MIN_SECONDS  # soundfile and soxr only when audio is touched

    return 0.0 < clip.duration < MIN_SECONDS  # 0.0: not probed


def plan_mixtures(
    clips: Sequence[Clip],
    n: int,
    *,
    snr_min: int = -15,
    snr_max: int = 15,
    seed: int = 0,
    caption: CaptionChoice = "first",
) -> list[MixtureRow]:
    """Draw a DCASE mixture list from clips.

    Sources are the clips with a caption (or, failing that, a label, used as text) that have
    at least one valid noise partner and are not known to be too short to score (a probed
    ``duration`` under :data:`~querysep.audio.io.MIN_SECONDS`; they may still be noise);
    they are used in turn in a seeded random order, so every source appears
    ``n // num_sources`` or one more times. Each source gets a noise clip drawn uniformly
    among the clips that share no label or audio file with it (any other clip when labels
    are absent), avoiding a repeated (source, noise) pair when possible, and an
    integer SNR drawn uniformly from ``[snr_min, snr_max]``.

    Args:
        clips: Candidate clips (the rows name them by ``id``; to write a list that
            :func:`~querysep.data.manifest.find_audio` resolves from the clips' files,
            rename them with :func:`~querysep.data.manifest.audio_names`, as
            ``querysep mixtures make`` does).
        n: Number of rows.
        snr_min: Lowest SNR in dB (inclusive).
        snr_max: Highest SNR in dB (inclusive).
        seed: Seed of the ``numpy.random.Generator(PCG64(seed))`` that draws everything.
        caption: ``"first"`` caption of the source, or one drawn at ``"random"``.

    Returns:
        ``n`` DCASE rows.

    Raises:
        ConfigError: ``n`` outside ``1..MAX_MIXTURES``, ``snr_min > snr_max``, an SNR
            beyond ``MAX_ABS_SNR_DB``, a negative seed or an unknown ``caption`` choice.
        DataError: No clip has a caption, or no pair of clips may be mixed.
    """
    if n < 1:
        raise ConfigError(f"the number of mixtures must be at least 1, got {n}")
    if n > MAX_MIXTURES:
        raise ConfigError(f"the number of mixtures must be at most {MAX_MIXTURES:,}, got {n:,}")
    if snr_min > snr_max:
        raise ConfigError(f"snr_min ({snr_min}) is greater than snr_max ({snr_max})")
    if max(abs(snr_min), abs(snr_max)) > MAX_ABS_SNR_DB:
        raise ConfigError(
            f"SNRs must lie within -{MAX_ABS_SNR_DB:g}..{MAX_ABS_SNR_DB:g} dB, "
            f"got {snr_min}..{snr_max}"
        )
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if caption not in ("first", "random"):
        raise ConfigError(f"caption must be 'first' or 'random', got {caption!r}")
    if not clips:
        raise DataError("no clips to make mixtures from")
    rng = np.random.Generator(np.random.PCG64(seed))
    sampler = PartnerSampler(clips)
    with_text = [i for i, clip in enumerate(clips) if clip.texts()]
    if not with_text:
        raise DataError("no clip has a caption or label to use as the query")
    with_text = [i for i in with_text if not too_short(clips[i])]
    if not with_text:
        raise DataError(
            "every clip with a caption or label is too short to score as a source (its "
            "manifest duration is under 0.1 s)"
        )
    sources = [i for i in with_text if sampler.has_partner(i)]
    if not sources:
        raise DataError(
            "no valid (source, noise) pair: every captioned clip shares a label or its "
            "audio file with every other clip"
        )
    used: dict[int, set[int]] = {}
    rows: list[MixtureRow] = []
    order: list[int] = []
    while len(rows) < n:
        if not order:
            order = [sources[k] for k in rng.permutation(len(sources))]
        i = order.pop(0)
        j = sampler.sample(i, rng, avoid=used.setdefault(i, set()))
        assert j is not None  # sources all have a partner
        used[i].add(j)
        texts = clips[i].texts()
        text = texts[0] if caption == "first" else texts[int(rng.integers(len(texts)))]
        snr = int(rng.integers(snr_min, snr_max + 1))
        rows.append(MixtureRow(text, source=clips[i].id, noise=clips[j].id, snr=float(snr)))
    return rows


# ----------------------------------------------------------------------- training mixing


@dataclass(frozen=True)
class MixParams:
    """Random parameters of one training mixture, drawn by :meth:`Mixer.sample_params`.

    Attributes:
        gain_db: Level of the interferer relative to the target, in dB, after energy
            matching (0 dB: equal RMS).
        offset: Delay of the interferer as a fraction of the segment length, in ``[0, 1)``:
            the interferer is shifted right by ``round(offset * time)`` samples and
            zero-padded at the start (0: full overlap).
    """

    gain_db: float = 0.0
    offset: float = 0.0


class Mixer:
    """On-the-fly training mixer: energy-matched interferer at a random relative level.

    The interferer is scaled to the target's RMS (the scale is clamped to
    ``±max_match_db`` so that silent or near-silent clips stay finite), then by a gain
    drawn uniformly in ``gain_db_range`` (the DCASE baseline's loudness range is
    -10..10 dB), optionally delayed, and added to the target. If the mixture's peak exceeds
    1, mixture, target and interference are all scaled by ``0.9 / peak``, so that
    ``mixture == target + interference`` still holds.

    Args:
        gain_db_range: ``(low, high)`` interferer gain range in dB.
        max_offset: Largest interferer delay, as a fraction of the segment (0: none).
        max_match_db: Bound, in dB, of the energy-matching gain.
    """

    def __init__(
        self,
        gain_db_range: tuple[float, float] = (-10.0, 10.0),
        *,
        max_offset: float = 0.0,
        max_match_db: float = 40.0,
    ) -> None:
        low, high = (float(v) for v in gain_db_range)
        if not (-MAX_ABS_SNR_DB <= low <= high <= MAX_ABS_SNR_DB):
            raise ConfigError(
                f"gain_db_range must lie within -{MAX_ABS_SNR_DB:g}..{MAX_ABS_SNR_DB:g} dB "
                f"with low <= high, got {gain_db_range}"
            )
        if not 0.0 <= max_offset < 1.0:
            raise ConfigError(f"max_offset must be in [0, 1), got {max_offset}")
        if not max_match_db >= 0.0:
            raise ConfigError(f"max_match_db must be >= 0, got {max_match_db}")
        self.gain_db_range = (low, high)
        self.max_offset = float(max_offset)
        self.max_match_db = float(max_match_db)

    def __repr__(self) -> str:
        return (
            f"Mixer(gain_db_range={self.gain_db_range}, max_offset={self.max_offset}, "
            f"max_match_db={self.max_match_db})"
        )

    def sample_params(self, rng: np.random.Generator | int) -> MixParams:
        """Draw the parameters of one mixture.

        Args:
            rng: A numpy generator, or an integer seed for ``Generator(PCG64(seed))``.
        """
        if not isinstance(rng, np.random.Generator):
            rng = np.random.Generator(np.random.PCG64(rng))
        low, high = self.gain_db_range
        gain_db = float(rng.uniform(low, high))
        offset = float(rng.uniform(0.0, self.max_offset)) if self.max_offset > 0 else 0.0
        return MixParams(gain_db=gain_db, offset=offset)

    def mix(
        self, target: np.ndarray, interferer: np.ndarray, params: MixParams
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mix and also return the scaled interference.

        Returns:
            ``(mixture, target, interference)`` with ``mixture == target + interference``.

        Shape:
            - target: ``(..., time)``
            - interferer: ``(..., time_i)``; cut or zero-padded at the end to ``time``
            - output: three arrays of ``target.shape``, float32
        """
        return self.mix_all(target, [interferer], [params])

    def mix_all(
        self,
        target: np.ndarray,
        interferers: Sequence[np.ndarray],
        params: Sequence[MixParams],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mix several interferers into ``target``, each with its own parameters.

        Each interferer is energy-matched to the target and scaled by its own gain, as in
        :meth:`mix`; the peak protection then applies to their sum.

        Returns:
            ``(mixture, target, interference)`` with ``mixture == target + interference``
            (``interference``: the sum of the scaled interferers).

        Shape:
            - target: ``(..., time)``
            - interferers: each ``(..., time_i)``; cut or zero-padded at the end to ``time``
            - output: three arrays of ``target.shape``, float32
        """
        if len(interferers) != len(params) or not interferers:
            raise ValueError(
                f"need one MixParams per interferer (at least one), got {len(interferers)} "
                f"interferers and {len(params)} parameter sets"
            )
        tgt = np.asarray(target, dtype=np.float32)
        time = tgt.shape[-1]
        limit = 10.0 ** (self.max_match_db / 20.0)
        rms_t = np.sqrt(_mean_power(tgt))
        interference = None
        for interferer, each in zip(interferers, params, strict=True):
            itf = fit_length(np.asarray(interferer, dtype=np.float32), time)
            shift = min(round(each.offset * time), time)
            if shift > 0:
                itf = np.concatenate(
                    [np.zeros_like(itf[..., :shift]), itf[..., : time - shift]], -1
                )
            rms_i = np.sqrt(_mean_power(itf))
            match = np.where(rms_i > 0.0, rms_t / np.where(rms_i > 0.0, rms_i, 1.0), limit)
            match = np.clip(match, 1.0 / limit, limit)
            scaled = (itf * (match * 10.0 ** (each.gain_db / 20.0))).astype(np.float32)
            interference = scaled if interference is None else interference + scaled
        assert interference is not None
        mixture = tgt + interference
        gain_out = _peak_gain(mixture)
        if gain_out is not None:
            tgt = (tgt * gain_out).astype(np.float32)
            interference = (interference * gain_out).astype(np.float32)
            mixture = tgt + interference
        return mixture, tgt, interference

    def apply(
        self, target: np.ndarray, interferer: np.ndarray, params: MixParams
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mix ``interferer`` into ``target`` with ``params``.

        Returns:
            ``(mixture, target)``; the target is the input target after the same peak
            protection as the mixture.

        Shape:
            - target: ``(..., time)``
            - interferer: ``(..., time_i)``; cut or zero-padded at the end to ``time``
            - output: two arrays of ``target.shape``, float32
        """
        mixture, target_out, _ = self.mix(target, interferer, params)
        return mixture, target_out


def _peak_gain(mixture: np.ndarray) -> np.ndarray | None:
    """Per-signal gain (along the last axis) bringing a peak above 1 to 0.9, else None."""
    if mixture.shape[-1] == 0:
        return None
    peak = np.max(np.abs(mixture), axis=-1, keepdims=True).astype(np.float64)
    if not np.any(peak > 1.0):
        return None
    return np.where(peak > 1.0, PEAK_AFTER_PROTECTION / np.maximum(peak, 1.0), 1.0)
