"""``querysep ldm``: the IRM-LDM helpers (System 3).

Usage::

    querysep ldm train-vae CONFIG.yaml [key=value ...] [--restart]
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import RESTART_OPTION, TRAIN_OVERRIDES_ARGUMENT, handle_errors
from .train import _echo, report_result, show_config

ldm_app = typer.Typer(
    help="IRM-LDM (System 3) helpers: train a small mel VAE for it (train-vae). "
    "IRM-LDM itself trains with 'querysep train configs/irm-ldm-*.yaml'.",
    no_args_is_help=True,
    add_completion=False,
)


@ldm_app.command("train-vae")
@handle_errors
def train_vae_cmd(
    config: Path = typer.Argument(
        ..., help="Mel VAE config (YAML), e.g. configs/esc50-melvae.yaml.", show_default=False
    ),
    overrides: list[str] | None = TRAIN_OVERRIDES_ARGUMENT,
    restart: bool = RESTART_OPTION,
) -> None:
    """Train a mel VAE (diffusers AutoencoderKL) on AudioLDM's log-mel front end; resumes
    from OUTPUT_DIR/checkpoints/last.ckpt and exports OUTPUT_DIR/model/ (vae/ +
    querysep_vae.json), which an IRM-LDM config names as its ldm."""
    from ..training.config import load_config
    from ..training.melvae import MelVaeTrainConfig, train_vae

    cfg = load_config(config, overrides or [], schema=MelVaeTrainConfig)
    result = train_vae(cfg, restart=restart, echo=_echo, on_checked=lambda: show_config(cfg))
    report_result(result, "done at step {step}: the VAE is in {exported}")


def register(app: typer.Typer) -> None:
    app.add_typer(ldm_app, name="ldm")
