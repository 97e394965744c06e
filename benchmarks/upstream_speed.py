"""System 2 speed: our AudioSep / DCASE-baseline inference against upstream's, in one run.

    python benchmarks/upstream_speed.py                          # AudioSep, 60 s at 16 kHz
    python benchmarks/upstream_speed.py --kind dcase-baseline --seconds 60
    python benchmarks/upstream_speed.py --seconds 2 --variants fp32,default   # a quick check
    python benchmarks/upstream_speed.py --upstream /tmp/audiosep-upstream \\
        --upstream-python /tmp/upstream-venv/bin/python            # + upstream's own code
    python benchmarks/upstream_speed.py --checkpoint audiosep_base_4M_steps.ckpt \\
        --text-tokenizer roberta-base/                             # real weights

Each variant runs in its own subprocess (so its peak RSS, ``ru_maxrss``, is its own) on the
same synthetic mixture of ``--seconds`` at ``--input-rate`` (16 kHz: System 2 resamples to
32 kHz for AudioSep and back), separates it once to warm up on a 1 s clip, then times one
whole separation. Variants (``--variants``, comma-separated):

- ``fp32``: ``Separator(precision="32")``, 10 s crossfaded segments: the exact path;
- ``fp32-whole``: the exact path on the whole file as one segment (what upstream does;
  compared with upstream to show parity);
- ``cl``: float32 with channels-last convolutions;
- ``bf16``: bf16 autocast, contiguous layout;
- ``default``: what ``querysep separate`` does for these checkpoints (precision ``auto``:
  bf16 autocast + channels-last where the CPU/GPU computes bf16 natively, else float32);
- ``compile``: ``default`` with ``torch.compile`` on the network (compile time excluded by the
  warm-up; not in the default list: it takes minutes to compile on a small CPU);
- ``upstream``: with ``--upstream DIR`` (a local copy of AudioSep's or the baseline's code,
  ``models/resunet.py`` + ``models/base.py``; never part of this repository), upstream's
  ``ResUNet30`` forward on the whole file at the model's rate, as its ``inference()`` and
  ``dcase_evaluator.py`` run it. Resampling is left out of upstream's time (it favours
  upstream). ``--upstream-python`` is the interpreter that has upstream's dependencies
  (torchlibrosa, librosa).

Weights: ``--checkpoint`` loads a real checkpoint (``load_model("KIND:PATH")``); without it,
the fixtures' deterministic rule weights (``tests/fixtures/resunet30``) and a fixed query
embedding are used, which time the same but say less about bf16 agreement on real weights.

Printed per variant: seconds, real-time factor (time / duration), peak RSS, agreement with
``fp32`` (SDR in dB, max |difference|), and the speed ratio to ``upstream`` (or ``fp32``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # this checkout's querysep, also for the children
FIXTURES = ROOT / "tests" / "fixtures" / "resunet30"
RATES = {"audiosep": 32000, "dcase-baseline": 16000}
DEFAULT_VARIANTS = "fp32,fp32-whole,cl,bf16,default"
QUERY = "a dog barking"


# ---------------------------------------------------------------------------------------
# children


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rule_state(kind: str) -> dict:
    """``ss_model.*`` with the fixtures' rule weights (STFT kernels as zeros: not used)."""
    from querysep.testing.upstream import upstream_checkpoint_state

    tag = "32k" if RATES[kind] == 32000 else "16k"
    return upstream_checkpoint_state(FIXTURES / f"keys_{tag}.tsv")


def _our_model(args: argparse.Namespace, cond: np.ndarray):
    import torch

    from querysep.models import ResUNet, ResUNetConfig, TextQueriedSeparator
    from querysep.models.text import TextEncoder

    if args.checkpoint:
        from querysep.models.upstream import load_upstream

        return load_upstream(args.checkpoint, args.kind, text_tokenizer=args.text_tokenizer)

    class Fixed(TextEncoder):  # the same query embedding for every variant and upstream
        kind = "fixed"
        dim = cond.shape[-1]

        def _encode(self, queries: list[str]) -> torch.Tensor:
            return torch.from_numpy(cond).float().expand(len(queries), -1)

        def to_config(self) -> dict:
            return {"kind": "fixed"}

    net = ResUNet(ResUNetConfig.resunet30(RATES[args.kind]))
    net.load_upstream_state_dict(_rule_state(args.kind))
    return TextQueriedSeparator(net, Fixed(), {"name": args.kind, "precision": "auto"}).eval()


def _run_ours(args: argparse.Namespace, audio: np.ndarray, cond: np.ndarray) -> np.ndarray:
    from querysep import Separator

    model = _our_model(args, cond)
    variant = args.child
    settings = {
        "fp32": {"precision": "32", "channels_last": False},
        "fp32-whole": {"precision": "32", "channels_last": False},
        "cl": {"precision": "32", "channels_last": True},
        "bf16": {"precision": "bf16-mixed", "channels_last": False},
        "default": {},
        "compile": {"compile": True},
    }[variant]
    segment = args.seconds + 1 if variant == "fp32-whole" else args.segment_seconds
    sep = Separator(model, segment_seconds=segment, overlap_seconds=1.0, **settings)
    print(f"  [{variant}] precision {sep.precision}, channels_last {sep.channels_last}", flush=True)
    warm = audio[: args.input_rate]
    start = time.perf_counter()
    sep.separate_tensor(warm, args.input_rate, QUERY)
    if variant == "compile":  # compiled for the segment length, too
        sep.separate_tensor(
            audio[: round(args.segment_seconds * args.input_rate)], args.input_rate, QUERY
        )
    print(f"  [{variant}] warm-up {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    out = sep.separate_tensor(audio, args.input_rate, QUERY)[0, 0].numpy()
    return out, time.perf_counter() - start


def _run_upstream(args: argparse.Namespace, audio: np.ndarray, cond: np.ndarray) -> np.ndarray:
    import torch

    from querysep.audio.io import resample  # the same resampler as ours: only the model differs

    sys.path.insert(0, str(Path(args.upstream).resolve()))
    try:
        from models.resunet import ResUNet30  # upstream's code, from --upstream
    except ImportError as exc:  # its dependencies live in another environment
        raise SystemExit(
            f"upstream code: {exc}; --upstream-python must be an interpreter with "
            "torchlibrosa and librosa (benchmarks/README.md)"
        ) from None

    rate = RATES[args.kind]
    model = ResUNet30(input_channels=1, output_channels=1, condition_size=512).eval()
    if args.checkpoint:
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True, mmap=True)
        state = ckpt.get("state_dict", ckpt)
    else:
        state = torch.load(args.workdir / "rule_state.pt", weights_only=True)
    own = model.state_dict()
    weights = {k[len("ss_model.") :]: v for k, v in state.items() if k.startswith("ss_model.")}
    weights = {k: v for k, v in weights.items() if k in own and "stft." not in k}
    missing = [k for k in own if k not in weights and "stft." not in k]
    if missing:
        raise SystemExit(f"upstream model: weights missing for {missing[:4]}")
    model.load_state_dict(weights, strict=False)  # STFT kernels: upstream's own
    condition = torch.from_numpy(cond).float()[None]
    torch.set_num_threads(args.threads)
    mixture = resample(audio[None], args.input_rate, rate)[0].astype(np.float32)
    with torch.no_grad():
        warm = torch.from_numpy(mixture[:rate])[None, None]
        model({"mixture": warm, "condition": condition})
        start = time.perf_counter()
        x = torch.from_numpy(mixture)[None, None]
        out = model({"mixture": x, "condition": condition})["waveform"][0, 0].numpy()
        seconds = time.perf_counter() - start
    back = resample(out[None], rate, args.input_rate)[0, : audio.shape[-1]]
    return back.astype(np.float32), seconds


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    audio = np.load(args.workdir / "audio.npy")
    cond = np.load(args.workdir / "cond.npy")
    run = _run_upstream if args.child == "upstream" else _run_ours
    out, seconds = run(args, audio, cond)
    np.save(args.workdir / f"{args.child}.npy", out)
    result = {"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}
    (args.workdir / f"{args.child}.json").write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------
# parent


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = ((reference - estimate) ** 2).sum()
    return float("inf") if noise == 0 else float(10 * np.log10((reference**2).sum() / noise))


def prepare(args: argparse.Namespace) -> None:
    import torch

    from querysep.testing import synth

    args.workdir.mkdir(parents=True, exist_ok=True)
    np.save(args.workdir / "audio.npy", synth.scene(args.seconds, args.input_rate, seed=0))
    if args.checkpoint:
        model = _our_model(args, np.zeros(512, np.float32))
        cond = model.encode([QUERY])[0].numpy()
    else:
        cond = torch.randn(512, generator=torch.Generator().manual_seed(0)).numpy()
        cond /= np.linalg.norm(cond)
        if "upstream" in args.variants:
            torch.save(_rule_state(args.kind), args.workdir / "rule_state.pt")
    np.save(args.workdir / "cond.npy", cond.astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=sorted(RATES), default="audiosep")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--input-rate", type=int, default=16000)
    ap.add_argument("--segment-seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=DEFAULT_VARIANTS)
    ap.add_argument("--upstream", type=Path, help="Local copy of upstream's code (not committed).")
    ap.add_argument("--upstream-python", default=sys.executable)
    ap.add_argument("--checkpoint", help="A real AudioSep / baseline .ckpt (else rule weights).")
    ap.add_argument("--text-tokenizer", help="roberta-base tokenizer folder (with --checkpoint).")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/querysep-upstream-speed"))
    ap.add_argument("--json", action="store_true", help="Also print the rows as JSON.")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    variants = [v for v in args.variants.split(",") if v]
    if args.upstream and "upstream" not in variants:
        variants.append("upstream")
    if "upstream" in variants and not args.upstream:
        ap.error("the upstream variant needs --upstream DIR")
    if "fp32" not in variants:
        variants.insert(0, "fp32")  # the reference of every agreement figure
    args.variants = variants
    if args.upstream and not (args.upstream / "models" / "resunet.py").is_file():
        sys.exit(f"--upstream {args.upstream}: no models/resunet.py (upstream's code, not ours)")
    if "upstream" in variants and not shutil.which(args.upstream_python):
        sys.exit(f"--upstream-python {args.upstream_python}: no such interpreter")
    from querysep.errors import QuerysepError

    try:
        prepare(args)
    except QuerysepError as exc:  # a missing checkpoint or tokenizer: its one-line message
        sys.exit(f"upstream_speed: {type(exc).__name__}: {exc}")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    rows = {}
    for variant in variants:
        python = args.upstream_python if variant == "upstream" else sys.executable
        cmd = [python, __file__, "--child", variant, "--kind", args.kind]
        cmd += ["--seconds", str(args.seconds), "--input-rate", str(args.input_rate)]
        cmd += ["--segment-seconds", str(args.segment_seconds), "--threads", str(args.threads)]
        cmd += ["--workdir", str(args.workdir)]
        if args.upstream:
            cmd += ["--upstream", str(args.upstream)]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        if args.text_tokenizer:
            cmd += ["--text-tokenizer", args.text_tokenizer]
        print(f"running {variant} ...", flush=True)
        if subprocess.run(cmd, env=env).returncode:
            sys.exit(f"variant {variant} failed (its error is above)")
        rows[variant] = json.loads((args.workdir / f"{variant}.json").read_text())
        rows[variant]["output"] = np.load(args.workdir / f"{variant}.npy")
    ref = rows["fp32"]["output"]
    base = "upstream" if "upstream" in rows else "fp32"
    import torch

    print(
        f"\n{args.kind}: {args.seconds:g} s at {args.input_rate} Hz (model {RATES[args.kind]} Hz), "
        f"{args.threads} threads, torch {torch.__version__}, "
        f"{'checkpoint ' + Path(args.checkpoint).name if args.checkpoint else 'rule weights'}"
    )
    print(
        f"{'variant':12s} {'seconds':>8s} {'RTF':>7s} {'peak RSS':>9s} {'SDR vs fp32':>12s} "
        f"{'max|diff|':>10s} {'x faster than ' + base:>22s}"
    )
    for name, row in rows.items():
        out = row["output"]
        row["rtf"] = row["seconds"] / args.seconds
        row["sdr_vs_fp32"] = sdr(ref, out)
        row["max_abs_vs_fp32"] = float(np.abs(ref - out).max())
        row["speedup"] = rows[base]["seconds"] / row["seconds"]
        rss = row["peak_rss_mb"] / 1024
        print(
            f"{name:12s} {row['seconds']:8.2f} {row['rtf']:7.4f} {rss:7.2f} GB "
            f"{row['sdr_vs_fp32']:9.1f} dB {row['max_abs_vs_fp32']:10.2e} {row['speedup']:21.2f}x"
        )
    if "upstream" in rows and "fp32-whole" in rows:
        diff = np.abs(rows["upstream"]["output"] - rows["fp32-whole"]["output"]).max()
        print(f"fp32-whole vs upstream: max |difference| {diff:.2e} (same input, whole file)")
    if args.json:

        def finite(value: object) -> object:  # strict JSON has no Infinity: null instead
            return None if isinstance(value, float) and not np.isfinite(value) else value

        print(
            json.dumps(
                {k: {f: finite(v) for f, v in r.items() if f != "output"} for k, r in rows.items()},
                allow_nan=False,
            )
        )


if __name__ == "__main__":
    main()
