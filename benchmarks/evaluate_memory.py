"""Peak memory of `querysep evaluate` as the mixture list grows, in one run.

Writes N synthetic 10-second clips and a DCASE-format list of N mixtures, then runs
`querysep evaluate` (with the `mixture` and `oracle-irm` rows) on the first `--small` and on
all `--large` rows, each in a fresh process, and prints both peak RSS figures and their
ratio: an evaluator that holds one mixture at a time stays flat as the list grows.

    python benchmarks/evaluate_memory.py --model test-tiny --small 100 --large 1000
    python benchmarks/evaluate_memory.py --model resunet30-16k --small 20 --large 80

`resunet30-16k` saves the DCASE baseline architecture with random weights (and a 512-d
weight-free text encoder) as a model folder first.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

CHILD = textwrap.dedent(
    """
    import sys
    from querysep.evaluation import evaluate
    lst, audio, model, out = sys.argv[1:5]
    systems = ["mixture", model, f"oracle-irm:{model}"]
    evaluate(lst, audio, systems, out, progress=False, baselines=False)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print(int(line.split()[1]) / 1024)
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="test-tiny")
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=1000)
    args = ap.parse_args()

    from querysep.data.manifest import MixtureRow, write_mixture_list
    from querysep.testing import synth

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        audio = root / "audio"
        audio.mkdir()
        rng = np.random.default_rng(0)
        ids = [f"clip{i:04d}" for i in range(min(args.large, 200))]
        for i, cid in enumerate(ids):
            synth.write_wav(audio / f"{cid}.wav", synth.scene(10.0, 16000, seed=i), 16000)
        rows = []
        for _ in range(args.large):
            a, b = rng.choice(len(ids), size=2, replace=False)
            rows.append(
                MixtureRow(
                    caption="a dog barking",
                    source=ids[a],
                    noise=ids[b],
                    snr=int(rng.integers(-15, 16)),
                )
            )
        model = args.model
        if model == "resunet30-16k":
            from querysep.models import (
                HashingTextEncoder,
                ResUNet,
                ResUNetConfig,
                TextQueriedSeparator,
            )

            net = ResUNet(ResUNetConfig.resunet30(16000))
            model = str(
                TextQueriedSeparator(net, HashingTextEncoder(512)).save_pretrained(
                    root / "resunet30"
                )
            )
        results = {}
        for n in (args.small, args.large):
            lst = root / f"list{n}.csv"
            write_mixture_list(rows[:n], lst)
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(lst), str(audio), model, str(root / f"out{n}")],
                capture_output=True,
                text=True,
            )
            if out.returncode:  # its error, not a CalledProcessError traceback that hides it
                sys.exit(
                    f"evaluating {n} mixtures failed (exit {out.returncode}):\n{out.stderr[-3000:]}"
                )
            results[n] = (float(out.stdout.strip().splitlines()[-1]), time.perf_counter() - t0)
    print(f"evaluate, model {args.model}, 10 s mixtures, systems mixture + model + oracle-irm")
    for n, (peak, secs) in results.items():
        print(f"  {n:5d} mixtures: peak RSS {peak:8.1f} MB, {secs:7.1f} s")
    ratio = results[args.large][0] / results[args.small][0]
    print(f"  ratio {args.large}/{args.small} mixtures: {ratio:.2f}")


if __name__ == "__main__":
    main()
