"""Write ESC-50 fold-4 test sets further from the training data: rooms, filters, 3 sources.

    python benchmarks/make_shifted_lists.py ../shared/datasets/esc50-16k/audio runs/shifted \
        [--rows 300] [--seed 2024]

From the first ``--rows`` rows of ``benchmarks/esc50-fold4.csv`` (label queries, SNR -15..15
dB) it writes three triplet lists, each with its own mixture and target files:

- ``OUT/room.csv``: each source convolved with its own impulse response of one shoebox room
  (image-source method: room 3-10 m a side, wall reflection 0.7-0.95, source and microphone
  at random places), then mixed by the DCASE protocol at the row's SNR; the target is the
  reverberant source, as the mixture holds it.
- ``OUT/eq.csv``: the row's DCASE mixture and target through one recording-chain filter
  (a Butterworth low-pass at 1-4 kHz, high-pass at 150-600 Hz, or a 300-3400 Hz telephone
  band, applied to both).
- ``OUT/three.csv``: the row's mixture plus a second fold-4 interferer of a class other than
  the source's and the first interferer's, at its own SNR against the source (uniform
  -15..15 dB, peak protection as the DCASE mixer's).

These are not the training effects of ``querysep.data.effects`` (noise-tail impulse responses,
smooth +-6 dB EQ curves): a model that learned those has to carry it over to another room
model, another filter family and another mixing rule. Score a model on them with
``querysep evaluate --mixtures OUT/room.csv --audio-dir OUT/room`` (and so on).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from querysep.audio import load_audio
from querysep.data.manifest import MixtureRow, find_audio, read_mixture_list, write_mixture_list
from querysep.data.mixing import fit_length, make_dcase_mixture

HERE = Path(__file__).resolve().parent
SR = 16000
SPEED_OF_SOUND = 343.0


def shoebox_rir(
    room: np.ndarray, src: np.ndarray, mic: np.ndarray, beta: float, seconds: float = 0.8
) -> np.ndarray:
    """Image-source impulse response of a shoebox room with one reflection coefficient.

    Every image whose sound arrives within ``seconds`` counts: it arrives after its distance
    over the speed of sound (rounded to a sample), attenuated by ``1 / distance`` and by
    ``beta`` per wall reflection. Returned from the direct path on, scaled to put it at 1.
    """
    length = int(seconds * SR)
    reach = seconds * SPEED_OF_SOUND
    images, hits = [], []
    for axis in range(3):  # along one axis: images at 2nL + s (|2n| reflections), 2nL - s (|2n-1|)
        n = np.arange(-int(reach / (2 * room[axis])) - 1, int(reach / (2 * room[axis])) + 2)
        images.append(
            np.concatenate([2 * n * room[axis] + src[axis], 2 * n * room[axis] - src[axis]])
        )
        hits.append(np.concatenate([np.abs(2 * n), np.abs(2 * n - 1)]))
    x, y, z = np.meshgrid(*images, indexing="ij", sparse=True)
    rx, ry, rz = np.meshgrid(*hits, indexing="ij", sparse=True)
    dist = np.sqrt((x - mic[0]) ** 2 + (y - mic[1]) ** 2 + (z - mic[2]) ** 2)
    delay = np.rint(dist * SR / SPEED_OF_SOUND).astype(np.int64)
    keep = delay < length
    refl = np.broadcast_to(rx + ry + rz, dist.shape)[keep]
    amp = beta ** refl.astype(np.float64) / np.maximum(dist[keep], 0.1)
    rir = np.bincount(delay[keep], weights=amp, minlength=length)[:length]
    direct = int(np.rint(np.linalg.norm(src - mic) * SR / SPEED_OF_SOUND))
    return (rir[direct:] / rir[direct]).astype(np.float32)


def random_room(rng: np.random.Generator, sources: int) -> list[np.ndarray]:
    room = rng.uniform(3.0, 10.0, size=3)
    room[2] = rng.uniform(2.5, 4.0)
    beta = float(rng.uniform(0.7, 0.95))
    mic = rng.uniform(0.5, room - 0.5)
    return [shoebox_rir(room, rng.uniform(0.5, room - 0.5), mic, beta) for _ in range(sources)]


def band_limit(signals: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One Butterworth-magnitude filter (zero phase) through every signal."""
    kind = rng.integers(3)
    n = signals[0].shape[-1]
    size = 2 * n
    f = np.fft.rfftfreq(size, 1.0 / SR)
    with np.errstate(divide="ignore"):
        if kind == 0:  # low-pass, order 4
            gain = 1.0 / np.sqrt(1.0 + (f / rng.uniform(1000.0, 4000.0)) ** 8)
        elif kind == 1:  # high-pass, order 4
            gain = 1.0 / np.sqrt(1.0 + (rng.uniform(150.0, 600.0) / np.maximum(f, 1e-3)) ** 8)
        else:  # telephone band
            gain = (
                1.0
                / np.sqrt(1.0 + (f / 3400.0) ** 8)
                / np.sqrt(1.0 + (300.0 / np.maximum(f, 1e-3)) ** 8)
            )
    return [np.fft.irfft(np.fft.rfft(s, size) * gain, size)[:n].astype(np.float32) for s in signals]


def add_interferer(
    mixture: np.ndarray, target: np.ndarray, interferer: np.ndarray, snr_db: float
) -> tuple[np.ndarray, np.ndarray]:
    """Add ``interferer`` at ``snr_db`` below the target (as the mixture holds it), then
    protect the peak as the DCASE mixer does (both scaled by 0.9 / peak above 1)."""
    extra = fit_length(interferer, target.shape[-1]).astype(np.float64)
    power = float(np.mean(extra**2))
    if power > 0:
        extra *= np.sqrt(
            float(np.mean(target.astype(np.float64) ** 2)) / power / 10 ** (snr_db / 10)
        )
    mixture = mixture + extra
    peak = float(np.abs(mixture).max())
    scale = 0.9 / peak if peak > 1.0 else 1.0
    return (mixture * scale).astype(np.float32), (target * scale).astype(np.float32)


def convolve(signal: np.ndarray, rir: np.ndarray) -> np.ndarray:
    size = 1 << (signal.shape[-1] + rir.shape[-1]).bit_length()
    out = np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(rir, size), size)
    return out[: signal.shape[-1]].astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("audio_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    every = read_mixture_list(HERE / "esc50-fold4.csv")
    rows = every[: args.rows]
    pool = sorted({r.source for r in every} | {r.noise for r in every})
    label = {clip: clip.rsplit("-", 1)[-1] for clip in pool}  # ESC-50 names end in the class
    rng = np.random.default_rng(args.seed)
    cache: dict[str, np.ndarray] = {}

    def load(clip: str) -> np.ndarray:
        if clip not in cache:
            cache[clip] = load_audio(find_audio(args.audio_dir, clip), SR, mono=True)[0][0]
        return cache[clip]

    lists: dict[str, list[MixtureRow]] = {"room": [], "eq": [], "three": []}
    for row in rows:
        source, noise = load(row.source), load(row.noise)
        made = {}
        rirs = random_room(rng, 2)
        made["room"] = make_dcase_mixture(
            convolve(source, rirs[0]), convolve(noise, rirs[1]), row.snr
        )
        made["eq"] = tuple(band_limit(list(make_dcase_mixture(source, noise, row.snr)), rng))
        others = [c for c in pool if label[c] not in (label[row.source], label[row.noise])]
        made["three"] = add_interferer(
            *make_dcase_mixture(source, noise, row.snr),
            load(others[int(rng.integers(len(others)))]),
            float(rng.uniform(-15.0, 15.0)),
        )
        for name, (mixture, target) in made.items():
            folder = args.out / name
            for sub, audio in (("mix", mixture), ("tgt", target)):
                (folder / sub).mkdir(parents=True, exist_ok=True)
                sf.write(folder / sub / f"{row.id}.wav", audio, SR, subtype="FLOAT")
            lists[name].append(
                MixtureRow(row.caption, mixture=f"mix/{row.id}.wav", target=f"tgt/{row.id}.wav")
            )
    for name, listed in lists.items():
        write_mixture_list(listed, args.out / f"{name}.csv")
        print(f"wrote {args.out / name}.csv: {len(listed)} rows")


if __name__ == "__main__":
    main()
