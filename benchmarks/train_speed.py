"""Training speed and data-loader stalls, measured in one run.

Trains ``--steps`` optimizer steps of a config (no validation, checkpoints or logs) and
prints steps/s and how long the loop waited for data: the time between the end of one step
and the start of the next (DataLoader fetch + host-to-device copy + loop bookkeeping),
as a fraction of wall time and as a ratio to the compute time (forward + backward +
optimizer, CUDA-synchronised) measured in the same run. A wait/compute ratio near 0 means
the GPU (or CPU) is the bottleneck; a ratio near or above 1 means the loader is. On CUDA it
also prints the peak GPU memory of the run, ``torch.cuda.max_memory_allocated`` (memory
held by tensors; ``nvidia-smi`` shows more: the caching allocator's reserve and the CUDA
context); on the CPU that line reads "n/a".

    python benchmarks/train_speed.py configs/tiny-smoke.yaml --steps 50
    python benchmarks/train_speed.py configs/baseline-dcase.yaml --steps 100 \\
        data.num_workers=8 trainer.precision=bf16-mixed
    # without a dataset: synthetic 10 s clips replace data.train
    python benchmarks/train_speed.py configs/baseline-dcase.yaml --synthetic 64 --steps 50 \\
        'model.text_encoder={kind: hashing, dim: 512}'
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def write_synthetic(folder: Path, num_clips: int, sample_rate: int, seconds: float) -> Path:
    """Tones (captioned) and noises (captioned), ``seconds`` long, plus their manifest."""
    import numpy as np
    import soundfile as sf

    from querysep.data.manifest import Clip, write_manifest

    rng = np.random.default_rng(0)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    clips = []
    for i in range(num_clips):
        path = folder / f"clip{i:04d}.wav"
        if i % 2:
            audio, caption = rng.uniform(-0.3, 0.3, t.size), "noise"
        else:
            audio, caption = 0.5 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t), "a tone"
        sf.write(path, audio.astype("float32"), sample_rate)
        clips.append(Clip(id=path.stem, audio=str(path), captions=[caption], labels=[caption]))
    manifest = folder / "synthetic.jsonl"
    write_manifest(clips, manifest)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="Training config (YAML).")
    parser.add_argument("overrides", nargs="*", help="key=value overrides.")
    parser.add_argument("--steps", type=int, default=50, help="Measured steps.")
    parser.add_argument("--skip", type=int, default=5, help="Warm-up steps left out.")
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="Train on N synthetic clips instead of data.train.",
    )
    parser.add_argument("--json", action="store_true", help="Also print the numbers as JSON.")
    args = parser.parse_intermixed_args()

    import lightning.pytorch as pl
    import torch

    from querysep.precision import describe_choice
    from querysep.training.callbacks import DataWaitTimer
    from querysep.training.config import load_config
    from querysep.training.datamodule import MixtureDataModule
    from querysep.training.module import SeparationTask
    from querysep.training.run import build_model, build_trainer

    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        overrides = list(args.overrides)
        if args.synthetic:
            base = load_config(args.config, overrides)
            rate = base.data.sample_rate or base.model.network_sample_rate or 16000
            manifest = write_synthetic(
                Path(tmp), args.synthetic, rate, max(base.data.segment_seconds, 1.0)
            )
            overrides.append(f"data.train=[{{manifest: {manifest}}}]")
        overrides += [
            f"trainer.output_dir={tmp}/run",
            f"trainer.max_steps={args.steps + args.skip}",
            "trainer.progress_bar=false",
            "trainer.export=false",
            "data.validation=null",
        ]
        cfg = load_config(args.config, overrides)
        pl.seed_everything(cfg.trainer.seed, verbose=False)
        model = build_model(cfg.model)
        t0 = time.perf_counter()
        dm = MixtureDataModule(cfg.data, model.sample_rate, seed=cfg.trainer.seed)
        dm.setup("fit")
        setup_s = time.perf_counter() - t0
        task = SeparationTask(
            model,
            cfg.optim,
            train_text_encoder=cfg.model.train_text_encoder,
            channels_last=cfg.trainer.channels_last,
        )
        timer = DataWaitTimer(skip=args.skip)
        trainer = build_trainer(cfg, callbacks=[timer], checkpoints=False, loggers=False)
        for index in range(torch.cuda.device_count() if torch.cuda.is_initialized() else 0):
            torch.cuda.reset_peak_memory_stats(index)
        trainer.fit(task, datamodule=dm)
        stats = timer.summary()

    root = trainer.strategy.root_device  # the model is back on the CPU after fit()
    device = str(root)
    peak_gpu_bytes: int | None = None
    if root.type == "cuda":
        device += f" ({torch.cuda.get_device_name(root)})"
        peak_gpu_bytes = int(torch.cuda.max_memory_allocated(root))
    steps = int(stats["steps"])
    print(f"config      {args.config} {' '.join(args.overrides)}")
    print(f"precision   {describe_choice(cfg.trainer.precision, cfg.trainer.accelerator)}")
    print(
        f"device      {device}, precision {trainer.precision}, "
        f"batch {cfg.data.batch_size} x {cfg.data.segment_seconds:g} s, "
        f"{cfg.data.num_workers} workers, torch threads {torch.get_num_threads()}"
    )
    print(f"data setup  {setup_s:.1f} s (manifests, preload)")
    print(f"steps       {steps} measured after {args.skip} warm-up steps")
    print(
        f"speed       {stats['steps_per_s']:.2f} steps/s "
        f"({stats['steps_per_s'] * cfg.data.batch_size:.1f} examples/s)"
    )
    print(f"compute     {1000 * stats['compute_s'] / max(steps, 1):.1f} ms/step")
    print(
        f"data wait   {1000 * stats['wait_s'] / max(steps, 1):.1f} ms/step = "
        f"{100 * stats['wait_fraction']:.1f}% of wall time, "
        f"{stats['wait_ratio']:.3f} x compute"
    )
    if peak_gpu_bytes is None:
        print("peak GPU    n/a (not trained on CUDA)")
    else:
        print(f"peak GPU    {peak_gpu_bytes / 2**30:.1f} GiB (torch.cuda.max_memory_allocated)")
    if args.json:
        numbers = {"setup_s": setup_s, "device": device, **stats}
        print(json.dumps({**numbers, "peak_gpu_bytes": peak_gpu_bytes}))


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # the user's fault (no GPU, a bad override): one line, not a trace
        from querysep.errors import error_line

        line = error_line(exc)
        if line is None:
            raise
        # The exception's name stays in the line: scripts/gpu_speed_probes.sh keeps "Error" lines.
        sys.exit(f"train_speed: {type(exc).__name__}: {line}")
