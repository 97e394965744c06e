"""``querysep mixtures``: make DCASE-format mixture lists from a manifest."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

import typer

from ..errors import DataError
from ._common import console, handle_errors


class _CaptionChoice(str, Enum):
    first = "first"
    random = "random"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="mixtures",
        help="Make mixture lists (DCASE format) from a manifest.",
        no_args_is_help=True,
    )

    @group.command("make")
    @handle_errors
    def make_cmd(
        manifest: Path = typer.Argument(..., help="Clip manifest (.jsonl) from 'prepare'."),
        num: int = typer.Option(..., "-n", "--num", help="Number of mixtures."),
        output: Path = typer.Option(..., "-o", "--output", help="CSV to write."),
        snr_min: int = typer.Option(-15, "--snr-min", help="Lowest SNR in dB."),
        snr_max: int = typer.Option(15, "--snr-max", help="Highest SNR in dB."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        split: list[str] = typer.Option(
            [], "--split", help="Use only clips of this split (repeatable)."
        ),
        caption: _CaptionChoice = typer.Option(
            _CaptionChoice.first, "--caption", help="Which of a source's captions to use."
        ),
    ) -> None:
        """Write N source,noise,snr,caption rows; clips sharing a label are never paired.

        Clips are named by their path under the folder that holds them all, printed at the
        end (the --audio-dir of 'querysep evaluate'), without extension unless another audio
        file of that name lies beside it (x.wav beside x.flac stays x.wav).
        """
        from ..data.manifest import audio_names, read_manifest, split_names, write_mixture_list
        from ..data.mixing import plan_mixtures
        from ..errors import QueryError
        from ..fileio import check_output_file, refuse_overwriting
        from ..models.text import validate_queries

        check_output_file(output)
        refuse_overwriting([output], [manifest])
        clips = read_manifest(manifest)
        refuse_overwriting([output], dict.fromkeys(clip.audio for clip in clips))  # its audio
        if split:
            found, absent = split_names(clips, split)
            if absent:  # a typo would quietly drop a split the user asked for
                raise DataError(
                    f"no clip of split {', '.join(absent)} in {manifest} (found: "
                    f"{', '.join(found)})"
                )
            clips = [clip for clip in clips if clip.split in split]
        rows = plan_mixtures(
            clips, num, snr_min=snr_min, snr_max=snr_max, seed=seed, caption=caption.value
        )
        for row in rows:  # a query no separator accepts would only fail when the list is used
            try:
                validate_queries(row.caption)
            except QueryError as exc:
                raise DataError(f"{manifest}: clip {row.source}'s caption: {exc}") from None
        # name clips by path, not id: ids need not be file names (x-2 for a second x.wav)
        used = list(dict.fromkeys(str(id_) for row in rows for id_ in (row.source, row.noise)))
        audio = {clip.id: clip.audio for clip in clips}
        missing = next((id_ for id_ in used if not os.path.isfile(audio[id_])), None)
        if missing is not None:  # it would move --audio-dir and fail only in evaluate
            raise DataError(
                f"{manifest}: clip {missing}'s audio {audio[missing]} is missing (moved since "
                "the manifest was written? run querysep prepare again)"
            )
        common = os.path.commonpath([os.path.dirname(clip.audio) for clip in clips])
        folder, names = audio_names([audio[id_] for id_ in used], folder=common)
        renamed = dict(zip(used, names, strict=True))
        for row in rows:
            row.source, row.noise = renamed[str(row.source)], renamed[str(row.noise)]
        write_mixture_list(rows, output)
        sources = len({row.source for row in rows})
        noises = len({row.noise for row in rows})
        console.print(
            f"wrote {len(rows)} mixtures ({sources} sources, {noises} noise clips) to {output}",
        )
        console.print(f"evaluate it with --audio-dir {folder}", soft_wrap=True)

    app.add_typer(group)
