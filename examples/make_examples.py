"""Rebuild the bundled example mixtures from ESC-50 fold-4 clips (DCASE mixing protocol).

Run from the repository root with ../shared/datasets/esc50-16k beside it:

    python examples/make_examples.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from querysep.audio import load_audio, save_audio
from querysep.data.mixing import make_dcase_mixture

ESC50 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "esc50-16k" / "audio"
HERE = Path(__file__).resolve().parent

# name: (target clip, interfering clip, SNR of target over interferer in dB)
EXAMPLES = {
    "dog-and-rain": ("4-182395-A-0.flac", "4-160999-A-10.flac", 0),
    "rooster-and-church-bells": ("4-164021-A-1.flac", "4-125825-A-46.flac", 0),
    "typing-and-crying-baby": ("4-172180-A-32.flac", "4-167077-A-20.flac", 0),
}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help only
    for name, (target, noise, snr) in EXAMPLES.items():
        source, sr = load_audio(ESC50 / target, 16000, mono=True)
        interferer, _ = load_audio(ESC50 / noise, 16000, mono=True)
        mixture, _ = make_dcase_mixture(source[0], interferer[0], snr)
        save_audio(HERE / f"{name}.wav", mixture, sr)
        print(f"wrote examples/{name}.wav")


if __name__ == "__main__":
    main()
