"""``querysep prepare``: turn a dataset folder into a clip manifest with a recipe."""

from __future__ import annotations

import inspect
import sys
from collections import Counter
from pathlib import Path

import typer

from ..errors import ConfigError, DataError, OutputError
from ._common import console, handle_errors

#: What prepare writes: a manifest may be replaced, any other file of the dataset (and the
#: dataset's own metadata, whatever its suffix) may not.
MANIFEST_SUFFIXES = (".jsonl", ".json")


def register(app: typer.Typer) -> None:
    @app.command("prepare")
    @handle_errors
    def prepare_cmd(
        name: str | None = typer.Argument(None, help="Recipe name (see --list)."),
        root: Path | None = typer.Argument(None, help="The dataset folder."),
        output: Path | None = typer.Option(
            None,
            "-o",
            "--output",
            help="Manifest to write (.jsonl), or an AudioSep/DCASE datafile (.json).",
        ),
        split: list[str] = typer.Option(
            [], "--split", help="Keep only clips of this split (repeatable)."
        ),
        captions_csv: Path | None = typer.Option(
            None, "--captions-csv", help="folder recipe: CSV with file_name,caption."
        ),
        captions: str | None = typer.Option(
            None,
            "--captions",
            help="esc50 recipe: 'label' (default), 'builtin' natural captions, or "
            "'builtin+more' (with the further 'more' phrasings), or 'builtin+more+extra'.",
        ),
        check_audio: bool = typer.Option(
            True,
            "--check-audio/--no-check-audio",
            help="Read each file's header (duration, rate) and skip unreadable files.",
        ),
        list_recipes: bool = typer.Option(False, "--list", help="List the recipes and exit."),
    ) -> None:
        """Write the manifest of a dataset: querysep prepare NAME ROOT -o manifest.jsonl"""
        from ..data.manifest import split_names, write_datafile, write_manifest
        from ..data.recipes import RECIPES, metadata_files
        from ..fileio import check_output_file, refuse_overwriting

        if list_recipes:
            for recipe_name, func in RECIPES.items():
                doc = (sys.modules[func.__module__].__doc__ or "").strip()
                summary = doc.splitlines()[0].replace("``", "") if doc else ""
                typer.echo(f"{recipe_name:15s} {summary}")
            return
        available = ", ".join(RECIPES)
        if name is None or root is None:
            raise ConfigError(f"give a recipe NAME and a ROOT folder (recipes: {available})")
        if name not in RECIPES:
            raise ConfigError(f"unknown recipe '{name}'; available: {available}")
        if output is None:
            raise ConfigError("give the manifest to write with -o/--output")
        if not root.is_dir():
            raise DataError(f"dataset folder not found: {root}")
        check_output_file(output)  # before the recipe, which can take a while
        # the dataset's own metadata is an input, whatever its suffix (lass_validation.json)
        metadata = [*metadata_files(name, root), *([captions_csv] if captions_csv else [])]
        refuse_overwriting([output], metadata)
        _refuse_dataset_file(output, root)
        recipe = RECIPES[name]
        kwargs: dict[str, object] = {"check_audio": check_audio}
        if captions_csv is not None:
            if "captions_csv" not in inspect.signature(recipe).parameters:
                raise ConfigError(f"--captions-csv does not apply to the {name} recipe")
            kwargs["captions_csv"] = captions_csv
        if captions is not None:
            if "captions" not in inspect.signature(recipe).parameters:
                raise ConfigError(f"--captions does not apply to the {name} recipe")
            kwargs["captions"] = captions

        result = recipe(root, **kwargs)
        clips = result.clips
        found, absent = split_names(result.clips, split)
        if clips and absent:  # a typo would quietly drop a split the user asked for
            raise DataError(
                f"no clip of split {absent[0]} for recipe {name} in {root} (splits found: "
                f"{', '.join(found)})"
            )
        if split:
            clips = [clip for clip in clips if clip.split in split]
        skipped = result.skipped_note
        if not clips:  # the error line says why, alone on stderr
            hint = f" (splits found: {', '.join(found)})" if split and found else ""
            hint += f"; {skipped}" if skipped else ""
            raise DataError(f"no clips found for recipe {name} in {root}{hint}")
        if skipped:
            print(f"querysep: {skipped}", file=sys.stderr)
        if output.suffix.lower() == ".json":
            texted = [clip for clip in clips if clip.texts()]  # the only ones a datafile holds
            if not texted:
                raise DataError(
                    f"none of the {len(clips)} clips found has a caption or a label, and a "
                    "datafile holds (audio, caption) pairs only: give captions "
                    "(--captions-csv for the folder recipe), or write a .jsonl manifest"
                )
            entries = write_datafile(texted, output)
            left = len(clips) - len(texted)
            console.print(
                f"wrote {entries} entries ({len(texted)} clips) to {output}"
                + (f"; {left} clips without a caption or label left out" if left else ""),
                soft_wrap=True,
            )
            clips = texted
        else:
            write_manifest(clips, output)
            console.print(f"wrote {len(clips)} clips to {output}")
        counts = Counter(clip.split for clip in clips)
        console.print(", ".join(f"{s}: {n}" for s, n in sorted(counts.items())))


def _refuse_dataset_file(output: Path, root: Path) -> None:
    """Refuse to write the manifest over a file of the dataset being read (a caption file,
    a clip); an earlier manifest (``.jsonl``, ``.json``) may be replaced, unless it is the
    dataset's metadata, which the caller refuses first.

    Raises:
        OutputError: ``output`` is such a file.
    """
    if not output.is_file() or output.suffix.lower() in MANIFEST_SUFFIXES:
        return
    if output.resolve().is_relative_to(root.resolve()):
        raise OutputError(
            f"cannot write {output}: it is a file of the dataset in {root}; choose another output"
        )
