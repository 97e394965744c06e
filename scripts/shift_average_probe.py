"""Score a separator with shift averaging at inference (a #17 probe).

    python scripts/shift_average_probe.py esc50-minilm --shifts 2 4 \
        --mixtures benchmarks/esc50-fold4.csv -o runs/eval/shift-tta-fold4

An STFT mask network sees a signal on a fixed frame grid; delaying the input by part of a
hop puts it on another grid, so the outputs differ a little. With ``--shifts N`` each
mixture is separated N times, delayed by ``k * hop / N`` samples (k = 0..N-1), each output
advanced back, and the N outputs averaged: N times the compute. The model as it is (N = 1)
is scored in the same run, for ``scripts/paired_difference.py``; rows are named ``N=1``,
``N=2``, ... The esc50-minilm model card ("Levers for v2") shows the outcome.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _probe import add_list_arguments, score

from querysep.evaluation.systems import ModelSystem


def shift_averaged(net: Callable, shifts: int, hop: int) -> Callable:
    """``net(x, cond)`` averaged over ``shifts`` delays of the input spread over one hop."""

    def run(x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        total = 0
        for k in range(shifts):
            delay = k * hop // shifts
            total = total + net(F.pad(x, (delay, 0)), cond)[..., delay : delay + n]
        return total / shifts

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a separator: name, folder or kind:path")
    parser.add_argument("--shifts", type=int, nargs="+", default=[2, 4], help="values of N > 1")
    add_list_arguments(parser)
    args = parser.parse_args()
    if any(n < 2 for n in args.shifts):
        raise SystemExit("error: --shifts takes values of 2 or more (N = 1 is always scored)")
    systems = [ModelSystem(args.model, name="N=1")]
    for n in args.shifts:
        system = ModelSystem(args.model, name=f"N={n}")
        hop = int(system.separator.model.net.config.hop_length)
        system.separator._net = shift_averaged(system.separator._net, n, hop)
        systems.append(system)
    score(args, systems)


if __name__ == "__main__":
    main()
