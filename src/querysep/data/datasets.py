"""Torch datasets: on-the-fly training mixtures and fixed DCASE-protocol validation mixtures.

Audio is decoded once (mono, at the model's rate) and kept in an :class:`AudioCache` as
int16 with a per-clip scale, half the memory of float32 at 16-bit resolution: ESC-50 folds
1-4 at 16 kHz (1600 x 5 s) take about 256 MB.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .effects import Effects
from .manifest import Clip, MixtureRow
from .mixing import (
    Mixer,
    MixParams,
    PartnerSampler,
    fit_length,
    load_row_mixture,
    row_files,
)

__all__ = [
    "AudioCache",
    "FixedMixtureDataset",
    "ItemPlan",
    "MixtureTrainingDataset",
    "TextChoice",
    "random_crop",
]

TextChoice = Literal["random", "first", "label", "all"]
_TEXT_CHOICES = ("random", "first", "label", "all")


class AudioCache:
    """Decoded mono audio at one sample rate, kept in memory.

    Each file is loaded with :func:`querysep.audio.io.load_audio` (``mono=True``,
    resampled to ``sample_rate``). With ``compact=True`` it is stored as int16 scaled to
    its own peak (half the memory of float32; quiet clips keep full 16-bit resolution),
    otherwise as the exact float32 samples. :meth:`get` always returns float32.

    Args:
        sample_rate: Rate to decode at, in Hz.
        max_items: Keep at most this many files (least recently used dropped first);
            ``None`` keeps everything, 0 nothing.
        compact: Store int16 instead of float32.
    """

    def __init__(
        self, sample_rate: int, *, max_items: int | None = None, compact: bool = True
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.max_items = max_items
        self.compact = compact
        self._items: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, path: object) -> bool:
        return str(path) in self._items

    @property
    def nbytes(self) -> int:
        """Memory held by the cached samples, in bytes."""
        return sum(stored.nbytes for stored, _ in self._items.values())

    def get(self, path: str | Path) -> np.ndarray:
        """Return the file's samples as float32, loading it on first use.

        Shape:
            - output: ``(time,)``
        """
        key = str(path)
        with self._lock:
            item = self._items.get(key)
            if item is not None and self.max_items is not None:
                self._items.move_to_end(key)
        if item is None:
            item = self._load(key)
        stored, scale = item
        if stored.dtype == np.float32:
            view = stored.view()
            view.flags.writeable = False
            return view
        return stored.astype(np.float32) * np.float32(scale)

    def preload(self, paths: Iterable[str | Path], num_workers: int = 0) -> None:
        """Load ``paths`` now, with ``num_workers`` threads (0: in this thread)."""
        todo = list(dict.fromkeys(str(p) for p in paths if str(p) not in self._items))
        if num_workers > 0:
            with ThreadPoolExecutor(num_workers) as pool:
                list(pool.map(self._load, todo))
        else:
            for path in todo:
                self._load(path)

    def _load(self, key: str) -> tuple[np.ndarray, float]:
        from ..audio.io import load_audio

        audio, _ = load_audio(key, self.sample_rate, mono=True)
        samples = np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1))
        if self.compact:
            peak = float(np.max(np.abs(samples))) if samples.size else 0.0
            scale = peak / 32767.0 if peak > 0 else 1.0
            item = (np.round(samples / scale).astype(np.int16), scale)
        else:
            item = (samples, 1.0)
        with self._lock:
            self._items[key] = item
            if self.max_items is not None:
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        return item


@dataclass(frozen=True)
class ItemPlan:
    """The random choices behind one training item (see :meth:`MixtureTrainingDataset.draw`).

    Attributes:
        target: Index of the target clip in ``dataset.clips``.
        interferer: Index of the interfering clip.
        query: The text query.
        params: Mixing parameters.
        crop_seed: Seed of the generator that places the crops (and draws the effects).
        extra: Index of a second interfering clip (a three-source mixture), or ``None``.
        extra_params: Its mixing parameters (``None`` with ``extra``).
        query_mix: A second text of the target's pool whose embedding is mixed into the
            query's (``query_mix_prob``), or ``None``.
        query_weight: The query's weight in that mix (1 without one).
    """

    target: int
    interferer: int
    query: str
    params: MixParams
    crop_seed: int
    extra: int | None = None
    extra_params: MixParams | None = None
    query_mix: str | None = None
    query_weight: float = 1.0


def _generator(*entropy: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(list(entropy)))


def random_crop(
    audio: np.ndarray, length: int, rng: np.random.Generator, *, num_candidates: int = 3
) -> np.ndarray:
    """Crop or zero-pad ``audio`` to ``length`` samples, preferring crops with energy.

    A clip longer than ``length`` is cropped at the most energetic of ``num_candidates``
    uniformly drawn start positions; a shorter one is placed at a uniformly drawn offset in
    a zero segment.

    Shape:
        - audio: ``(time,)``
        - output: ``(length,)``
    """
    time = audio.shape[-1]
    if time == length:
        return audio
    if time < length:
        start = int(rng.integers(length - time + 1))
        out = np.zeros(length, dtype=audio.dtype)
        out[start : start + time] = audio
        return out
    starts = rng.integers(time - length + 1, size=max(1, num_candidates))
    energies = [float(np.dot(audio[s : s + length], audio[s : s + length])) for s in starts]
    start = int(starts[int(np.argmax(energies))])
    return audio[start : start + length]


def speed_crop(
    audio: np.ndarray, length: int, sample_rate: int, speed: float, rng: np.random.Generator
) -> np.ndarray:
    """A :func:`random_crop` of ``audio`` played ``speed`` times as fast (tape-style).

    Enough of the clip is cropped to fill ``length`` samples after the change, then
    resampled with soxr from ``round(sample_rate * speed)`` Hz to ``sample_rate``: duration
    shrinks and every frequency rises by that ratio (``speed > 1``), or the reverse.

    Shape:
        - audio: ``(time,)``
        - output: ``(length,)``
    """
    from ..audio.io import resample

    source_rate = max(1, round(sample_rate * speed))
    if source_rate == sample_rate:
        return random_crop(audio, length, rng)
    crop = random_crop(audio, -(-length * source_rate // sample_rate), rng)
    out = resample(np.ascontiguousarray(crop, dtype=np.float32), source_rate, sample_rate)
    return fit_length(out, length)


class MixtureTrainingDataset(Dataset):
    """Training examples mixed on the fly: a target clip, its text query, an interferer.

    Item ``i`` of epoch ``e`` is fully determined by ``(seed, e, i)``. Targets are visited in
    a random order that covers every usable target once per ``len(targets)`` items; the
    interferer is drawn uniformly among the clips that share no label with the target
    (any other clip for unlabelled data). Both are cropped to the segment (see
    :func:`random_crop`), each optionally played at its own random speed
    (:func:`speed_crop`), optionally reverberated and equalised (``effects``, see
    :mod:`querysep.data.effects`), and mixed by ``mixer`` with parameters drawn from the
    item's generator; with ``three_source_prob`` some items get a second interferer. The
    target returned is the one in the mixture: speed changes and effects are applied to
    each source before mixing, so ``mixture - target`` is exactly the interference.

    Call :meth:`set_epoch` at the start of each epoch to get new mixtures; with DataLoader
    workers use ``persistent_workers=False`` so that the workers see the new epoch. Call
    :meth:`preload` before creating the DataLoader so forked workers share the decoded
    audio instead of each decoding its own copy.

    Args:
        clips: All clips: targets are those with a caption or label (and a valid
            interferer); every clip can be an interferer.
        sample_rate: Rate of the returned audio, in Hz.
        segment_seconds: Length of each example, in seconds.
        mixer: Mixer (default: ``Mixer()``, interferer at -10..10 dB).
        seed: Base seed.
        length: Items per epoch (default: number of usable targets).
        text_choice: Query text: a ``"random"`` caption, the ``"first"`` caption, a
            random ``"label"``, or a random one of ``"all"`` captions and labels. Clips
            without the asked kind fall back to the other.
        cache_size: Keep at most this many decoded files (``None``: all).
        augmented_caption_prob: Probability that an item's query is drawn (uniformly)
            from the target's ``augmented_captions`` instead of by ``text_choice``; clips
            without augmented captions always use ``text_choice``. At 0 (the default) no
            extra random number is drawn, so items equal those of earlier versions.
        speed_range: ``(low, high)``: target and interferer are each played at a speed
            drawn uniformly in this range (e.g. ``(0.9, 1.1)``: up to 10 % slower or
            faster, pitch moving with it). ``(1, 1)`` (the default) draws nothing, so
            items equal those of earlier versions.
        effects: Reverberation and EQ of the sources (default: none; inactive effects
            draw nothing, so items equal those of earlier versions).
        three_source_prob: Probability that an item mixes a second interferer (another
            clip sharing no label with the target, its own gain drawn by ``mixer``); at 0
            (the default) nothing is drawn.

    Raises:
        DataError: No clip can be a target.
        ConfigError: Bad segment length, sample rate, length, seed, text choice or
            augmented caption probability.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        sample_rate: int,
        segment_seconds: float,
        mixer: Mixer | None = None,
        seed: int = 0,
        length: int | None = None,
        text_choice: TextChoice = "random",
        *,
        cache_size: int | None = None,
        augmented_caption_prob: float = 0.0,
        speed_range: tuple[float, float] = (1.0, 1.0),
        effects: Effects | None = None,
        three_source_prob: float = 0.0,
        query_mix_prob: float = 0.0,
    ) -> None:
        if not 0.0 <= query_mix_prob <= 1.0:
            raise ConfigError(f"query_mix_prob must be in [0, 1], got {query_mix_prob}")
        self.query_mix_prob = float(query_mix_prob)
        if not 0.0 <= three_source_prob <= 1.0:
            raise ConfigError(f"three_source_prob must be in [0, 1], got {three_source_prob}")
        self.three_source_prob = float(three_source_prob)
        self.effects = effects if effects is not None else Effects()
        low, high = (float(v) for v in speed_range)
        if not 0.5 <= low <= high <= 2.0:
            raise ConfigError(
                f"speed_range must be (low, high) with 0.5 <= low <= high <= 2, got {speed_range}"
            )
        self.speed_range = (low, high)
        if sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, got {sample_rate}")
        if not 0.0 <= augmented_caption_prob <= 1.0:
            raise ConfigError(
                f"augmented_caption_prob must be in [0, 1], got {augmented_caption_prob}"
            )
        self.augmented_caption_prob = float(augmented_caption_prob)
        self.segment_length = round(segment_seconds * sample_rate)
        if self.segment_length <= 0:
            raise ConfigError(f"segment_seconds must be positive, got {segment_seconds}")
        if text_choice not in _TEXT_CHOICES:
            raise ConfigError(
                f"text_choice must be one of {', '.join(_TEXT_CHOICES)}, got {text_choice!r}"
            )
        if text_choice == "first" and self.query_mix_prob > 0.0:
            raise ConfigError(
                "query_mix_prob needs more than one text per clip, and text_choice 'first' "
                "gives one: use 'random', 'label' or 'all'"
            )
        if length is not None and length < 1:
            raise ConfigError(f"length must be at least 1, got {length}")
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")
        self.clips = list(clips)
        self.sample_rate = int(sample_rate)
        self.segment_seconds = float(segment_seconds)
        self.mixer = mixer if mixer is not None else Mixer()
        self.seed = int(seed)
        self.text_choice: TextChoice = text_choice
        self.epoch = 0
        self.sampler = PartnerSampler(self.clips)
        self.targets = [
            i for i, clip in enumerate(self.clips) if clip.texts() and self.sampler.has_partner(i)
        ]
        if not self.targets:
            raise DataError(
                "no usable target clip: targets need a caption or label and another clip "
                "sharing none of their labels"
            )
        self.length = int(length) if length is not None else len(self.targets)
        self.cache = AudioCache(self.sample_rate, max_items=cache_size)
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (>= 0) whose mixtures the items return."""
        if epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def preload(self, num_workers: int = 0) -> None:
        """Decode every clip into the cache now, with ``num_workers`` threads."""
        self.cache.preload((clip.audio for clip in self.clips), num_workers)

    def _target_index(self, index: int) -> int:
        block, position = divmod(index, len(self.targets))
        key = (self.epoch, block)
        order = self._orders.get(key)
        if order is None:
            if len(self._orders) > 8:
                self._orders.clear()
            order = _generator(self.seed, self.epoch, 1, block).permutation(len(self.targets))
            self._orders[key] = order
        return self.targets[int(order[position])]

    def _query(self, clip: Clip, rng: np.random.Generator) -> str:
        if self.augmented_caption_prob > 0.0:
            use_augmented = float(rng.random()) < self.augmented_caption_prob
            if use_augmented and clip.augmented_captions:
                augmented = clip.augmented_captions
                return augmented[int(rng.integers(len(augmented)))]
        pool = self._pool(clip)
        if self.text_choice == "first":
            return pool[0]
        return pool[int(rng.integers(len(pool)))]

    def query_texts(self) -> list[str]:
        """Every text an item's query may be, target by target (each once, first seen
        first): the texts ``text_choice`` draws from and, with ``augmented_caption_prob``,
        the augmented captions. Mixed queries (``query_mix_prob``) lie between them."""
        texts: list[str] = []
        for t in self.targets:
            clip = self.clips[t]
            pool = self._pool(clip)
            texts.extend(pool[:1] if self.text_choice == "first" else pool)
            if self.augmented_caption_prob > 0.0:
                texts.extend(clip.augmented_captions)
        return list(dict.fromkeys(texts))

    def _pool(self, clip: Clip) -> list[str]:
        """The texts ``text_choice`` draws from (the first is the ``"first"`` choice)."""
        captions, labels = clip.caption_texts(), clip.label_texts()
        if self.text_choice == "first":
            return captions or labels
        return {"random": captions or labels, "label": labels or captions}.get(
            self.text_choice, captions + labels
        )

    def _query_mix(
        self, clip: Clip, query: str, rng: np.random.Generator
    ) -> tuple[str | None, float]:
        """A second text of the clip's pool (other than ``query``) and ``query``'s weight;
        ``(None, 1.0)`` when the pool has no other text."""
        others = [text for text in dict.fromkeys(self._pool(clip)) if text != query]
        if not others:
            return None, 1.0
        return others[int(rng.integers(len(others)))], float(rng.random())

    def draw(self, index: int) -> ItemPlan:
        """Draw the random choices of item ``index`` of the current epoch, loading nothing."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        rng = _generator(self.seed, self.epoch, 0, index)
        t = self._target_index(index)
        query = self._query(self.clips[t], rng)
        j = self.sampler.sample(t, rng)
        assert j is not None  # targets all have a partner
        params = self.mixer.sample_params(rng)
        extra = extra_params = None
        if self.three_source_prob > 0.0 and float(rng.random()) < self.three_source_prob:
            extra = self.sampler.sample(t, rng, avoid={j})
            extra_params = self.mixer.sample_params(rng)
        crop_seed = int(rng.integers(2**63))
        query_mix, query_weight = None, 1.0
        if self.query_mix_prob > 0.0 and float(rng.random()) < self.query_mix_prob:
            query_mix, query_weight = self._query_mix(self.clips[t], query, rng)
        return ItemPlan(
            target=t,
            interferer=j,
            query=query,
            params=params,
            crop_seed=crop_seed,
            extra=extra,
            extra_params=extra_params,
            query_mix=query_mix,
            query_weight=query_weight,
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return ``{"mixture", "target", "query"}`` for item ``index`` of the current epoch
        (and ``"query_mix"``, ``"query_weight"`` with ``query_mix_prob``).

        Shape:
            - mixture: ``(1, segment_length)`` float32 tensor
            - target: ``(1, segment_length)`` float32 tensor
        """
        plan = self.draw(index)
        rng = np.random.Generator(np.random.PCG64(plan.crop_seed))
        plain = self.speed_range == (1.0, 1.0)
        speeds = [None, None] if plain else [float(v) for v in rng.uniform(*self.speed_range, 2)]
        target = self._crop(plan.target, speeds[0], rng)
        interferers, params = [self._crop(plan.interferer, speeds[1], rng)], [plan.params]
        if plan.extra is not None and plan.extra_params is not None:
            speed = None if plain else float(rng.uniform(*self.speed_range))
            interferers.append(self._crop(plan.extra, speed, rng))
            params.append(plan.extra_params)
        if self.effects.active:
            effects = self.effects.draw(rng, 1 + len(interferers))
            target, *interferers = effects.apply([target, *interferers], self.sample_rate)
        mixture, target, _ = self.mixer.mix_all(target, interferers, params)
        item = {"mixture": _tensor(mixture), "target": _tensor(target), "query": plan.query}
        if self.query_mix_prob > 0.0:  # every item has the keys, so that batches collate
            item["query_mix"] = plan.query_mix if plan.query_mix is not None else plan.query
            item["query_weight"] = plan.query_weight
        return item

    def _crop(self, clip: int, speed: float | None, rng: np.random.Generator) -> np.ndarray:
        """A segment of clip ``clip``: a plain crop, or one played at ``speed``."""
        audio = self._audio(self.clips[clip])
        if speed is None:
            return random_crop(audio, self.segment_length, rng)
        return speed_crop(audio, self.segment_length, self.sample_rate, speed, rng)

    def _audio(self, clip: Clip) -> np.ndarray:
        audio = self.cache.get(clip.audio)
        if audio.size == 0:
            raise DataError(f"clip '{clip.id}' has no samples: {clip.audio}")
        return audio


class FixedMixtureDataset(Dataset):
    """Validation / evaluation mixtures from a mixture list, built by the DCASE protocol.

    Each item is built by :func:`querysep.data.mixing.load_row_mixture`, exactly as
    evaluation builds it: DCASE rows mix ``<audio_dir>/<source>.*`` and
    ``<audio_dir>/<noise>.*`` at the row's SNR; triplet rows load ``<audio_dir>/<mixture>``
    and ``<audio_dir>/<target>`` (cut to the shorter of the two). File names are resolved
    when the dataset is built, so a missing file fails early.

    Args:
        rows: The mixture list (see :func:`querysep.data.read_mixture_list`).
        audio_dir: Folder holding the clips.
        sample_rate: Rate of the returned audio, in Hz (files are resampled).
        cache: Keep decoded clips in memory (useful when many rows share clips).

    Raises:
        DataError: A clip named by a row has no audio file.
    """

    def __init__(
        self,
        rows: Sequence[MixtureRow],
        audio_dir: str | Path,
        sample_rate: int,
        *,
        cache: bool = False,
    ) -> None:
        if sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, got {sample_rate}")
        self.rows = list(rows)
        self.audio_dir = Path(audio_dir)
        self.sample_rate = int(sample_rate)
        self.cache = AudioCache(self.sample_rate, max_items=None if cache else 0, compact=False)
        found: dict[str, Path] = {}
        self._paths = [row_files(row, self.audio_dir, found=found) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return ``{"mixture", "target", "query", "id"}`` for row ``index``.

        Shape:
            - mixture: ``(1, time)`` float32 tensor, ``time`` the source's (or shorter
              file's) length
            - target: ``(1, time)`` float32 tensor
        """
        row = self.rows[index]
        mixture, target = load_row_mixture(
            row, self._paths[index], self.sample_rate, load=self.cache.get
        )
        return {
            "mixture": _tensor(mixture),
            "target": _tensor(target),
            "query": row.caption,
            "id": row.id,
        }


def _tensor(audio: np.ndarray) -> torch.Tensor:
    """``(1, time)`` float32 tensor owning its memory (cached arrays may be read-only views)."""
    arr = np.ascontiguousarray(audio, dtype=np.float32)
    if not arr.flags.writeable or not arr.flags.owndata:
        arr = arr.copy()
    return torch.from_numpy(arr).unsqueeze(0)
