"""Peak memory and speed of file separation, against baselines measured in the same run.

For a model and a duration, this writes a synthetic recording (streamed to disk, not held in
memory), then measures in fresh subprocesses:

- the baseline: peak RSS of a process that only imports querysep and loads the model;
- a short run (1 minute of audio): peak RSS and wall time;
- the long run (``--minutes``): peak RSS and wall time.

It prints the peaks, their ratios to the baseline and to the short run (memory bounded by the
segment means the long/short ratio stays near 1), and the real-time factor (processing time /
audio duration; lower is faster).

    python benchmarks/separate_memory.py --model test-tiny --minutes 60
    python benchmarks/separate_memory.py --model resunet30-16k --minutes 60

``resunet30-16k`` is the DCASE baseline architecture with random weights and a 512-d
hashing text encoder: same compute and memory as the real checkpoint.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from querysep.api import Separator
    from querysep.models import HashingTextEncoder, ResUNet, ResUNetConfig, TextQueriedSeparator

    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    spec, path, threads, segment = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    torch.set_num_threads(threads)
    if spec == "resunet30-16k":
        net = ResUNet(ResUNetConfig.resunet30(16000))
        model = TextQueriedSeparator(net, HashingTextEncoder(512))
    else:
        model = spec
    sep = Separator(model, segment_seconds=segment)
    out = {"load_peak_mb": peak_mb()}
    if path != "-":
        t0 = time.perf_counter()
        sep.separate_file(path, ["a dog barking"], [path + ".out.wav"])
        out["seconds"] = time.perf_counter() - t0
    out["peak_mb"] = peak_mb()
    print(json.dumps(out))
    """
)


def write_recording(path: Path, minutes: float, sample_rate: int) -> None:
    import numpy as np

    from querysep.audio import AudioWriter
    from querysep.testing import synth

    block = synth.scene(60.0, sample_rate, seed=0)
    total = round(minutes * 60 * sample_rate)
    with AudioWriter(path, sample_rate, 1) as w:
        done = 0
        while done < total:
            n = min(block.shape[-1], total - done)
            w.write(np.asarray(block[:n])[None])
            done += n


def child(spec: str, path: str, threads: int, segment: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, spec, path, str(threads), str(segment)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:  # its error, not a CalledProcessError traceback that hides it
        sys.exit(f"measuring {path} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="test-tiny")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--segment-seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        short, long_ = Path(tmp) / "short.wav", Path(tmp) / "long.wav"
        write_recording(short, 1.0, args.sample_rate)
        write_recording(long_, args.minutes, args.sample_rate)
        base = child(args.model, "-", args.threads, args.segment_seconds)
        s = child(args.model, str(short), args.threads, args.segment_seconds)
        t0 = time.perf_counter()
        big = child(args.model, str(long_), args.threads, args.segment_seconds)
        wall = time.perf_counter() - t0

    dur = args.minutes * 60
    print(
        f"model {args.model}, {args.minutes:g} min at {args.sample_rate} Hz, "
        f"segment {args.segment_seconds:g} s, {args.threads} threads"
    )
    print(f"  baseline (import + load model)   peak RSS {base['peak_mb']:8.1f} MB")
    print(
        f"  1-minute file                    peak RSS {s['peak_mb']:8.1f} MB  "
        f"RTF {s['seconds'] / 60:.4f}"
    )
    print(
        f"  {args.minutes:g}-minute file{' ' * max(1, 20 - len(f'{args.minutes:g}'))}"
        f"peak RSS {big['peak_mb']:8.1f} MB  RTF {big['seconds'] / dur:.4f}  "
        f"(process wall {wall:.0f} s)"
    )
    print(
        f"  ratio long/baseline {big['peak_mb'] / base['peak_mb']:.2f}, "
        f"long/1-minute {big['peak_mb'] / s['peak_mb']:.2f}"
    )


if __name__ == "__main__":
    main()
