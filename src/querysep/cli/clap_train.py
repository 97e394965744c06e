"""``querysep clap train``, ``ensemble``, ``refit-text`` and ``zeroshot`` (the ``clap`` group).

Thin wrappers over :func:`querysep.clap.train.train`,
:func:`querysep.clap.train.export_ensemble`, :func:`querysep.clap.train.refit_text_head` and
:func:`querysep.clap.zeroshot.evaluate_zeroshot`; wire them in with :func:`add_train_command`
(train and ensemble), :func:`add_refit_command` and :func:`add_zeroshot_command`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..data.recipes.esc50 import DEFAULT_ROOT
from ._common import console, handle_errors

__all__ = ["add_refit_command", "add_train_command", "add_zeroshot_command"]


def add_train_command(clap_app: typer.Typer) -> None:
    """Add ``train CONFIG -o OUT [key=value ...]`` and ``ensemble MEMBER... --config CONFIG
    -o OUT`` to the ``clap`` group."""

    @clap_app.command("train")
    @handle_errors
    def train_cmd(
        config: Path = typer.Argument(..., help="YAML config, e.g. configs/esc50-clap.yaml."),
        output: Path = typer.Option(
            ...,
            "--output",
            "-o",
            help="Run folder (resumes if it holds a checkpoint); the model goes to OUTPUT/model, "
            "named after OUTPUT unless the config sets name.",
        ),
        overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. epochs=20."),
    ) -> None:
        """Train the small CLAP (log-mel CNN + frozen MiniLM) on ESC-50 folds."""
        from ..captions.paraphrase import paraphrase
        from ..clap.train import load_train_config, train

        cfg = load_train_config(str(config), list(overrides or []))
        folder = train(
            cfg,
            output,
            log=lambda line: console.print(line),
            paraphrase=paraphrase,  # for `paraphrases: N` (the clap room leaves captions alone)
        )
        console.print(f"model written to {folder}")

    @clap_app.command("ensemble")
    @handle_errors
    def ensemble_cmd(
        members: list[Path] = typer.Argument(
            ..., help="Trained single-model folders (a run's OUT/model, or a refit of it)."
        ),
        config: Path = typer.Option(
            ...,
            "--config",
            help="The recipe the members were trained with (recorded in the model; its "
            "weights_dtype decides how the weights are stored).",
        ),
        output: Path = typer.Option(
            ...,
            "--output",
            "-o",
            help="Folder for the ensemble (must not exist); the model is named after it unless "
            "the recipe sets name.",
        ),
        weights_dtype: str = typer.Option(
            None, "--weights-dtype", help="float32 or float16 (default: the recipe's)."
        ),
    ) -> None:
        """Join trained small CLAPs into one ensemble model (ATS = the mean of their cosines)."""
        from ..clap.small import FORMAT, small_clap_format
        from ..clap.train import export_ensemble, load_train_config
        from ..errors import ConfigError

        _check_new_folder(output)
        cfg = load_train_config(str(config))
        if weights_dtype is not None:  # checked, with the recipe's, when the weights are written
            cfg.weights_dtype = weights_dtype
        for member in members:
            if small_clap_format(member) != FORMAT:
                raise ConfigError(
                    f"{member} is not a single small-CLAP folder (querysep clap train's OUT/model)"
                )
        folder = export_ensemble(cfg, members, output)
        console.print(
            f"ensemble of {len(members)} members ({cfg.weights_dtype} weights) written to {folder}",
        )


def add_zeroshot_command(clap_app: typer.Typer) -> None:
    """Add ``zeroshot [--clap SPEC] [--fold 4]`` to the ``clap`` group."""

    @clap_app.command("zeroshot")
    @handle_errors
    def zeroshot_cmd(
        clap: str = typer.Option(
            None,
            "--clap",
            help="Audio-text model: name, folder or kind:path (default: the bundled one).",
        ),
        fold: list[int] = typer.Option([4], "--fold", help="ESC-50 fold(s) to score."),
        data: Path = typer.Option(
            Path(DEFAULT_ROOT),
            "--data",
            help="ESC-50 folder with esc50.csv and audio/.",
        ),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps or auto."),
        batch_size: int = typer.Option(32, "--batch-size", help="Audio windows per forward pass."),
    ) -> None:
        """Zero-shot accuracy (labels, held-out captions) and ATS ROC-AUC on ESC-50 folds."""
        from ..clap.registry import load_clap
        from ..clap.zeroshot import evaluate_zeroshot, load_esc50, seen_folds

        if batch_size < 1:
            raise typer.BadParameter("must be at least 1", param_hint="'--batch-size'")
        folds = sorted(set(fold))
        model = load_clap(clap, device)
        seen = sorted(seen_folds(model) & set(folds))
        if seen:  # printed first: the scores below would read as held-out ones
            print(
                f"querysep: note: this model was trained (or its text head refitted) on fold "
                f"{', '.join(map(str, seen))}: those scores are not held-out",
                file=sys.stderr,
            )
        result = evaluate_zeroshot(model, load_esc50(data, folds), batch_size=batch_size)
        console.print(json.dumps({"clap": clap or "default", "folds": folds, **result}, indent=2))


def add_refit_command(clap_app: typer.Typer) -> None:
    """Add ``refit-text MODEL -o OUT [--ridge 0.3] [--discriminant 0.0] [--template T ...]
    [--audio-views N] [--fold N ...] [--more-captions]`` to the ``clap`` group."""

    @clap_app.command("refit-text")
    @handle_errors
    def refit_cmd(
        model: Path = typer.Argument(
            ..., help="A small-CLAP folder (querysep clap train's OUT/model), or an ensemble."
        ),
        output: Path = typer.Option(
            ..., "--output", "-o", help="Folder for the refitted model (must not exist)."
        ),
        ridge: float = typer.Option(
            0.3,
            "--ridge",
            help="L2 penalty of the ridge regression (up to 1e8; one that shrinks the head "
            "below what the model's weights_dtype stores is refused).",
        ),
        discriminant: float = typer.Option(
            0.0,
            "--discriminant",
            help="Weight (0-1) of each class's discriminant direction in its target "
            "(0: the audio class centroid alone).",
        ),
        shrinkage: float = typer.Option(
            0.3, "--shrinkage", help="Shrinkage of the within-class covariance (x its mean)."
        ),
        template: list[str] = typer.Option(
            None,
            "--template",
            help='Text template holding "{}" (repeat it; text embedding = mean over them). '
            "Default: keep the model's (the text alone for a trained model).",
        ),
        audio_views: int = typer.Option(
            None,
            "--audio-views",
            help="Store this many audio views (circular shifts) in the model before the refit "
            "(default: keep the model's).",
        ),
        fold: list[int] = typer.Option(
            [1, 2, 3], "--fold", help="ESC-50 folds whose clips give the class centroids."
        ),
        more_captions: bool = typer.Option(
            False,
            "--more-captions",
            help="Fit on each class's 'more' captions too (querysep's further training "
            "phrasings), not only its label variants and 'train' captions.",
        ),
        data: Path = typer.Option(
            Path(DEFAULT_ROOT),
            "--data",
            help="ESC-50 folder with esc50.csv and audio/.",
        ),
    ) -> None:
        """Refit a trained small CLAP's text head by ridge regression (config: text_ridge)."""
        import shutil

        from ..clap.small import (
            MAX_VIEWS,
            ClapEnsemble,
            SmallClap,
            is_small_clap_folder,
            load_small_clap,
        )
        from ..clap.train import check_refit, refit_text_head
        from ..clap.zeroshot import load_esc50
        from ..errors import ConfigError
        from ..fileio import publish_folder

        templates = list(template) if template else None
        _check_new_folder(output)  # before the slow work
        check_refit(
            ridge,
            text_mlp=False,
            discriminant=discriminant,
            shrinkage=shrinkage,
            templates=templates,
        )
        if audio_views is not None and not 1 <= audio_views <= MAX_VIEWS:
            raise ConfigError(f"--audio-views must be 1-{MAX_VIEWS}, got {audio_views}")
        if not is_small_clap_folder(model):
            raise ConfigError(f"{model} is not a small-CLAP folder (querysep clap train's model)")
        loaded = load_small_clap(str(model))
        split = load_esc50(data, list(fold))
        members = loaded.members if isinstance(loaded, ClapEnsemble) else [loaded]
        if isinstance(loaded, ClapEnsemble):
            loaded.text_encoder()  # one MiniLM for every member's refit
        refits = []
        for member in members:
            assert isinstance(member, SmallClap)
            if audio_views is not None:
                member.config.audio_views = member.audio_views = audio_views
            result = refit_text_head(
                member,
                split,
                ridge,
                discriminant=discriminant,
                shrinkage=shrinkage,
                templates=templates,
                more_captions=more_captions,
            )
            refits.append({**result, "folds": list(fold)})
        if audio_views is not None:
            loaded.audio_views = audio_views
        if isinstance(loaded, ClapEnsemble):  # its metadata describes the members
            loaded.metadata = {**loaded.metadata, "text_head_refit": refits}
        else:
            loaded.config.metadata = {**loaded.config.metadata, "text_head_refit": refits[0]}
        partial = output.with_name(f".{output.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            publish_folder(loaded.save_pretrained(partial), output)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        console.print(
            f"text head refitted (ridge {ridge:g}, discriminant {discriminant:g}, "
            f"{len(members[0].config.text_templates)} template(s), "
            f"{loaded.audio_views} audio view(s), "
            f"folds {list(fold)}): {output}",
        )


def _check_new_folder(output: Path) -> None:
    """Raise a one-line error unless ``output`` can be created as a new folder."""
    from ..errors import ConfigError
    from ..fileio import check_output_folder

    check_output_folder(output)  # nothing in the way
    if output.exists():
        raise ConfigError(f"{output} already exists: choose a new output folder")
