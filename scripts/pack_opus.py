"""Pack a manifest's audio as Ogg/Opus, to carry a dataset compactly (e.g. to a GPU machine).

    python scripts/pack_opus.py MANIFEST.jsonl OUT_DIR [--compression 0.5] [--split fold1 ...]

Writes OUT_DIR/audio/<id>.opus and OUT_DIR/manifest.jsonl pointing at them (relative paths),
keeping captions, labels and splits, and prints the median and range of the decoded clips'
SNR against the originals (the codec's error; higher compression means smaller and noisier).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf

from querysep.audio import load_audio
from querysep.data.manifest import read_manifest, write_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--compression", type=float, default=0.5)
    ap.add_argument("--split", action="append", default=None)
    args = ap.parse_args()
    clips = read_manifest(args.manifest)
    if args.split:
        clips = [c for c in clips if c.split in args.split]
    (args.out / "audio").mkdir(parents=True, exist_ok=True)
    packed, snrs = [], []
    for clip in clips:
        audio, rate = load_audio(clip.audio, mono=True)
        dest = args.out / "audio" / f"{clip.id}.opus"
        sf.write(
            dest, audio[0], rate, format="OGG", subtype="OPUS", compression_level=args.compression
        )
        decoded, _ = sf.read(dest, dtype="float32")
        n = min(decoded.shape[0], audio.shape[-1])
        err = float(np.sum((audio[0, :n] - decoded[:n]) ** 2))
        power = float(np.sum(audio[0, :n] ** 2))
        if power > 0:
            snrs.append(10 * np.log10(power / max(err, 1e-12)))
        packed.append(dataclasses.replace(clip, audio=str(dest.resolve())))
    write_manifest(packed, args.out / "manifest.jsonl")
    size = sum(p.stat().st_size for p in (args.out / "audio").iterdir())
    print(f"packed {len(packed)} clips, {size / 2**20:.1f} MiB, into {args.out}")
    if snrs:
        low, mid, high = np.min(snrs), np.median(snrs), np.max(snrs)
        print(f"codec SNR vs originals: median {mid:.1f} dB, range {low:.1f}..{high:.1f} dB")


if __name__ == "__main__":
    main()
