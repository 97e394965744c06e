"""Average the weights of separators that share one architecture (a "model soup").

    python scripts/average_weights.py runs/soup esc50-minilm runs/fx-control/model \
        runs/extra/model runs/qmix/model runs/fx-effects/model

Loads each model (a name, a folder or ``kind:path``), checks that their networks have the
same parameters and shapes, and writes a model folder whose floating-point tensors are the
uniform mean of theirs. Counters (BatchNorm's ``num_batches_tracked``), the text encoder,
the config and the metadata come from the first model, less its name, folder and training
record; the members are recorded under ``metadata.averaged_from``. Averaging only makes
sense for fine-tunes of one starting point: the #17 probe of the esc50-minilm model card
("Levers for v2") averaged five such runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from querysep.pretrained import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", help="model folder to write")
    parser.add_argument("models", nargs="+", help="two or more separators (names or folders)")
    args = parser.parse_args()
    if len(args.models) < 2:
        raise SystemExit("error: give at least two models to average")
    models = [load_model(spec) for spec in args.models]
    states = [m.net.state_dict() for m in models]
    first = states[0]
    for spec, state in zip(args.models[1:], states[1:], strict=True):
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        if shapes != {k: tuple(v.shape) for k, v in first.items()}:
            raise SystemExit(f"error: {spec} has another architecture than {args.models[0]}")
    averaged = {
        key: torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
        if value.is_floating_point()
        else value
        for key, value in first.items()
    }
    soup = models[0]
    soup.net.load_state_dict(averaged)
    kept = {k: v for k, v in soup.metadata.items() if k not in ("name", "path", "training")}
    soup.metadata = {**kept, "name": Path(args.output).name, "averaged_from": list(args.models)}
    print(f"wrote {soup.save_pretrained(args.output)} (mean of {len(models)} models)")


if __name__ == "__main__":
    main()
