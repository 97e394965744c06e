"""float32 against bf16 autocast on this machine, and what ``precision: auto`` picks here.

Times the forward pass (inference) of a separation network on one clip in float32 and under
bf16 autocast, in the same run, and prints the ratio. On a CPU without native bf16 the bf16
pass is emulated and far slower; ``auto`` then picks float32.

    python benchmarks/precision_speed.py                     # the bundled default model, 10 s
    python benchmarks/precision_speed.py --model resunet30-16k --seconds 2
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/precision_speed.py ...
        # this CPU held back to AVX2 kernels, as on a CPU without AVX-512 BF16
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="esc50-minilm",
        help="A model name, or resunet30-16k / resunet30-32k (random weights).",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="Clip length.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes (best is shown).")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1 or not args.seconds > 0:
        parser.error("--repeats and --threads must be at least 1 and --seconds above 0")

    import torch

    from querysep.models.resunet import ResUNet, ResUNetConfig
    from querysep.precision import autocast, cpu_info, describe_choice
    from querysep.pretrained import load_model

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    if args.model.startswith("resunet30-"):
        rate = 32000 if args.model.endswith("32k") else 16000
        torch.manual_seed(0)
        net = ResUNet(ResUNetConfig.resunet30(rate)).eval()
    else:
        net = load_model(args.model).net.eval()
    rate = int(net.config.sample_rate)
    mixture = 0.1 * torch.randn(1, 1, round(args.seconds * rate))
    condition = torch.randn(1, int(net.config.condition_dim))

    def best_time(precision: str) -> float:
        times = []
        for i in range(args.repeats + 1):  # the first pass warms up and is not counted
            start = time.perf_counter()
            with torch.inference_mode(), autocast(precision, device):  # type: ignore[arg-type]
                net(mixture, condition)
            if i:
                times.append(time.perf_counter() - start)
        return min(times)

    fp32 = best_time("32")
    bf16 = best_time("bf16-mixed")
    print(f"cpu         {cpu_info()}")
    print(f"auto        {describe_choice('auto', 'cpu')}")
    print(f"model       {args.model}, {args.seconds:g} s at {rate} Hz, {args.threads} threads")
    print(f"float32     {fp32:.3f} s (best of {args.repeats})")
    print(f"bf16        {bf16:.3f} s (best of {args.repeats})")
    print(f"bf16/fp32   {bf16 / fp32:.2f}x the float32 time")


if __name__ == "__main__":
    main()
