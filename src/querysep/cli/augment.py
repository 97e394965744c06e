"""``querysep augment``: five new captions per caption, from an LLM or the offline rules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import typer

from ..errors import ConfigError, DataError
from ._common import handle_errors, show_progress

Backend = Literal["openai", "offline"]


def register(app: typer.Typer) -> None:
    @app.command("augment")
    @handle_errors
    def augment_cmd(
        manifest: Path = typer.Argument(..., help="Manifest written by 'querysep prepare'."),
        output: Path = typer.Option(..., "-o", "--output", help="Manifest to write (.jsonl)."),
        backend: str = typer.Option(
            ..., "--backend", help="'openai' (any OpenAI-compatible endpoint) or 'offline'."
        ),
        model: str | None = typer.Option(
            None, "--model", help="openai: the model name (default gpt-4, as in the report)."
        ),
        base_url: str | None = typer.Option(
            None, "--base-url", help="openai: endpoint root, e.g. http://localhost:8000/v1."
        ),
        cache: Path | None = typer.Option(
            None,
            "--cache",
            help="Answer cache (default: OUTPUT without its extension + .cache.jsonl, e.g. "
            "out.cache.jsonl for -o out.jsonl).",
        ),
        concurrency: int = typer.Option(4, "--concurrency", min=1, help="Requests in flight."),
        rate_limit: float | None = typer.Option(
            None, "--rate-limit", min=0.001, help="Most requests per minute (default: none)."
        ),
        limit: int | None = typer.Option(
            None, "--limit", min=1, help="Augment only the first N clips."
        ),
        template: Path | None = typer.Option(
            None, "--template", help="Prompt template file with {caption} and {keywords}."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Count requests and estimate tokens; send nothing."
        ),
        timeout: float = typer.Option(
            60.0,
            "--timeout",
            min=0.001,
            help="Seconds one request may take, its whole answer included (at most 3600).",
        ),
        max_tries: int = typer.Option(
            6, "--max-tries", min=1, help="Attempts per request (at most 100)."
        ),
        backoff: float = typer.Option(
            1.0, "--backoff", min=0.0, help="First retry wait in seconds; doubles each time."
        ),
        max_reasks: int = typer.Option(
            2, "--max-reasks", min=0, help="Follow-ups per caption for missing captions."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    ) -> None:
        """Write OUTPUT: MANIFEST's clips with 'augmented_captions' (5 per caption)."""
        from ..captions.backends import (
            MAX_TIMEOUT,
            MAX_TRIES,
            OfflineBackend,
            OpenAIBackend,
            RetryPolicy,
            check_base_url,
        )
        from ..captions.cache import AnswerCache
        from ..captions.job import estimate, plan_items, run_job
        from ..captions.prompt import load_template
        from ..data.manifest import read_manifest, write_manifest
        from ..fileio import check_output_file, refuse_overwriting

        for option, value in (
            ("--timeout", timeout),
            ("--backoff", backoff),
            ("--rate-limit", rate_limit),
        ):
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{option} must be a finite number, not {value}")
        if timeout > MAX_TIMEOUT:
            raise ConfigError(f"--timeout must be at most {MAX_TIMEOUT:g} seconds, not {timeout:g}")
        if max_tries > MAX_TRIES:
            raise ConfigError(f"--max-tries must be at most {MAX_TRIES}, not {max_tries}")
        if backend not in ("openai", "offline"):
            raise ConfigError(f"--backend must be 'openai' or 'offline', not {backend!r}")
        if backend == "offline" and (model is not None or base_url is not None):
            raise ConfigError("--model and --base-url apply to the openai backend only")
        if model is not None and (not model.strip() or not model.isprintable()):
            raise ConfigError(f"--model must name the endpoint's model, e.g. gpt-4, got {model!r}")
        if base_url is not None:
            check_base_url(base_url, "--base-url")
        prompt = load_template(template)
        clips = read_manifest(manifest)
        if not clips:
            raise DataError(f"{manifest} holds no clips: nothing to augment")
        if not any(text.strip() for clip in clips for text in clip.texts()):
            raise DataError(
                f"no clip of {manifest} has a caption or a label: nothing to augment (its "
                f"{len(clips)} clips can serve as interferers only)"
            )
        check_output_file(output)
        cache_path = cache if cache is not None else output.with_name(output.stem + ".cache.jsonl")
        inputs = [manifest, *([template] if template is not None else [])]
        refuse_overwriting([output, cache_path], inputs, error=ConfigError)
        audio = dict.fromkeys(clip.audio for clip in clips)  # each file once
        refuse_overwriting([output, cache_path], audio, error=ConfigError)
        answers = AnswerCache(cache_path)
        retry = RetryPolicy(max_tries=max_tries, backoff_base=backoff, timeout=timeout)
        if backend == "offline":
            chosen = OfflineBackend()
        elif dry_run:  # no client, no key needed: only the names matter for the cache keys
            chosen = _Named("openai", model or "gpt-4")
        else:
            chosen = OpenAIBackend(
                model or "gpt-4",
                base_url,
                retry=retry,
                rate_limit=rate_limit,
                max_reasks=max_reasks,
            )
        if dry_run:
            chosen_clips = clips[:limit] if limit is not None else clips
            items, _ = plan_items(chosen_clips, chosen, prompt)  # type: ignore[arg-type]
            est = estimate(items, answers, prompt, backend=chosen)  # type: ignore[arg-type]
            typer.echo(
                f"dry run: {est.items} distinct captions in {len(chosen_clips)} clips, "
                f"{est.cache_hits} already in the cache {cache_path}; would send "
                f"{est.requests} requests, about {est.tokens_in} input and {est.tokens_out} "
                "output tokens (4 characters a token, 20 tokens a caption, re-asks not "
                "counted); nothing was sent"
            )
            return
        with answers:
            out, summary = run_job(
                clips,
                chosen,
                prompt,
                answers,
                concurrency=concurrency,
                limit=limit,
                progress=show_progress(progress),
            )
        write_manifest(out, output)
        s = summary
        typer.echo(
            f"wrote {s.clips} clips ({s.augmented_clips} augmented, {s.captions_written} "
            f"augmented captions) to {output}"
        )
        typer.echo(
            f"captions: {s.items} distinct, {s.cache_hits} from the cache; requests: "
            f"{s.requests}, retries: {s.retries}, re-asks: {s.reasks}; rejected captions: "
            f"{s.rejected}; short of 5: {s.short}; no caption: {s.no_caption}; tokens in/out: "
            f"{s.tokens_in}/{s.tokens_out}"
        )
        if s.empty:
            typer.echo(
                f"{s.empty} captions got no usable caption in their answers; they are not "
                "cached: run the same command again to ask for them again"
            )


class _Named:
    """A backend's names for the cache keys of a dry run."""

    def __init__(self, name: str, model: str) -> None:
        self.name = name
        self.model = model
