"""One request of the web app, without the web: checks, files, ATS, figures, progress."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from querysep.app import AppConfig, SeparationService, Workspace
from querysep.app.service import SeparationResult, example_rows
from querysep.errors import AudioError, ConfigError, ModelNotFoundError, QueryError
from querysep.models.text import validate_queries
from querysep.testing import synth

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def service(tmp_path: Path):
    ws = Workspace(parent=tmp_path)
    config = AppConfig(models=("test-tiny",), clap="test-tiny", max_minutes=0.5, examples=None)
    yield SeparationService(config, ws)
    ws.close()


def test_a_request_gives_one_wav_per_query_the_residual_ats_and_figures(
    service: SeparationService, tmp_path: Path
) -> None:
    x = np.stack([synth.scene(12.0, 22050, seed=1), synth.scene(12.0, 22050, seed=2)])
    path = synth.write_wav(tmp_path / "street.wav", x, 22050, subtype="FLOAT")
    seen: list[tuple[float, str]] = []
    result = service.separate(
        path,
        "a dog barking\n\n  rain  \n",
        segment_seconds=4.0,
        overlap_seconds=0.5,
        progress=lambda fraction, what: seen.append((fraction, what)),
    )
    assert result.queries == ["a dog barking", "rain"]
    names = [p.name for p in (*result.outputs, result.residual)]
    assert names == ["street__a-dog-barking.wav", "street__rain.wav", "street__residual.wav"]
    parts = []
    for p in (*result.outputs, result.residual):
        data, rate = sf.read(p, always_2d=True)
        assert rate == 22050 and data.shape == x.T.shape
        assert p.parent.parent == service.workspace.root / "jobs"
        parts.append(data)
    np.testing.assert_allclose(sum(parts), x.T, rtol=0, atol=3.03 / 2**15)
    assert len(result.ats) == 2 and all(-1 <= a <= 1 for a in result.ats)
    assert all(f.read_bytes()[:4] == b"\x89PNG" for f in result.figures)
    report = result.report()
    assert report["model"] == "test-tiny" and report["ats_model"] == result.clap
    assert [o["file"] for o in report["outputs"]] == names[:2]
    # test-tiny answers queries as they are: no bank, each output's text is its query
    assert result.answered_as is None and result.far is None
    assert [o["answered_as"] for o in report["outputs"]] == ["a dog barking", "rain"]
    assert [o["far_from_training"] for o in report["outputs"]] == [None, None]  # not known
    # segment by segment: the bar moves forward while separating, then the figures
    fractions = [f for f, what in seen if what == "separating"]
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 0.9
    assert seen[-1][1] == "drawing spectrograms"


def test_queries_one_per_line(service: SeparationService) -> None:
    assert service.parse_queries("dog\n\n rain \n") == ["dog", "rain"]
    for text in ("", "\n \n", None):
        with pytest.raises(QueryError) as exc:
            service.parse_queries(text)
        with pytest.raises(QueryError) as cli:
            validate_queries([""])  # what `separate -q ""` says
        assert str(exc.value) == str(cli.value)
    with pytest.raises(QueryError, match="9 queries: at most 8"):
        service.parse_queries("\n".join(f"sound {i}" for i in range(9)))
    with pytest.raises(QueryError, match="too long"):
        service.parse_queries("z" * 1001)


def test_requests_are_checked_before_any_work(service: SeparationService, tmp_path: Path) -> None:
    good = synth.write_wav(tmp_path / "good.wav", synth.scene(1.0, 16000), 16000)
    long = synth.write_wav(tmp_path / "long.wav", np.zeros(16000 * 31, np.float32), 16000)
    nan = np.full(16000 * 3, 0.1, np.float32)
    nan[40000] = np.nan  # found only while separating, after the first segment
    late_nan = synth.write_wav(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    silent = synth.write_wav(tmp_path / "silent.wav", np.zeros(16000 * 2, np.float32), 16000)
    cases = [
        ({"recording": None}, AudioError, "no recording"),
        # 31 s over a 0.5 min limit: the message shows that it is over
        ({"recording": long}, AudioError, r"long.wav lasts 0\.52 min; .* at most 0\.5 min"),
        ({"model": "nope"}, ModelNotFoundError, "unknown model 'nope': this app offers test-tiny"),
        ({"segment_seconds": None}, ConfigError, "segment length"),
        (  # memory grows with the segment: one request must not take the server down
            {"segment_seconds": 600.0},
            ConfigError,
            "a segment of 600 s is over this app's limit of 60 s",
        ),
        ({"overlap_seconds": 20.0}, ConfigError, "overlap"),
        ({"device": "tpu"}, ConfigError, "unknown device 'tpu'"),
        (
            {"recording": late_nan, "segment_seconds": 1.0, "overlap_seconds": 0.1},
            AudioError,
            "NaN",
        ),
        ({"recording": silent}, AudioError, r"silent.wav: silent .*nothing to separate"),
    ]
    for change, error, match in cases:
        request = {"recording": good, "queries": "dog", **change}
        recording, queries = request.pop("recording"), request.pop("queries")
        with pytest.raises(error, match=match):
            service.separate(recording, queries, **request)
    assert not list((service.workspace.root / "jobs").iterdir())  # the failed job left nothing
    small = SeparationService(AppConfig(max_upload_mb=0.01, examples=None), service.workspace)
    size_mb = good.stat().st_size / 1e6  # 0.032 MB
    with pytest.raises(AudioError, match=r"good.wav is 0\.03 MB; .* at most 0\.01 MB"):
        small.check_recording(good)
    just = SeparationService(  # a byte over the limit still shows as over it
        AppConfig(max_upload_mb=(good.stat().st_size - 1) / 1e6, examples=None), service.workspace
    )
    with pytest.raises(AudioError, match=rf"good.wav is {size_mb:.6f} MB; .* at most 0\.03"):
        just.check_recording(good)


@pytest.mark.parametrize(
    ("value", "limit", "shown"),
    [(0.5167, 0.5, "0.52"), (1.1667, 1.0, "1.2"), (0.0321, 0.01, "0.03"), (30.0001, 30, "30.0001")],
)
def test_a_value_over_its_limit_is_shown_over_it(value: float, limit: float, shown: str) -> None:
    from querysep.app.service import _above

    assert _above(value, limit) == shown


def test_models_offered() -> None:
    assert AppConfig().model_choices[0] == AppConfig().default_model == "esc50-minilm"
    assert "test-tiny" not in AppConfig().model_choices  # random weights: only when asked for
    config = AppConfig(models=("test-tiny", "esc50-minilm"))
    assert config.model_choices == ["test-tiny", "esc50-minilm", "irm-ldm-esc50"]
    assert config.default_model == "test-tiny"


def test_the_bundled_examples_come_with_their_queries() -> None:
    rows = example_rows(EXAMPLES)
    assert (rows[0][0].name, rows[0][1]) == ("dog-and-rain.wav", "a dog barking\nrain")
    assert len(rows) == 3 and all(q.count("\n") == 1 for _, q in rows)
    assert example_rows(None) == []


def test_report_is_strict_json_when_an_output_is_silent(tmp_path: Path) -> None:
    result = SeparationResult(
        queries=["a dog", "nothing"],
        outputs=[tmp_path / "a.wav", tmp_path / "b.wav"],
        residual=tmp_path / "rest.wav",
        ats=[0.41234, math.nan],
        figures=[tmp_path / "a.png", tmp_path / "b.png"],
        model="test-tiny",
        clap="test-tiny",
        sample_rate=16000,
        num_channels=1,
        seconds=1.0,
    )
    text = json.dumps(result.report(), allow_nan=False)  # NaN is not JSON
    assert [o["ats"] for o in json.loads(text)["outputs"]] == [0.4123, None]


def test_track_heading_says_n_a_for_a_silent_output() -> None:
    from querysep.app.page import track_heading

    item = {"title": "a dog", "ats": 0.71234, "ats_model": "esc50-clap"}
    assert track_heading(item) == "### a dog\nATS **0.712** (esc50\\-clap)"  # escaped
    silent = track_heading({**item, "ats": math.nan})
    assert silent == "### a dog\nATS n/a (the output is silent)"
    snapped = track_heading({**item, "title": "a hound baying", "answered_as": "dog"})
    assert snapped == "### a hound baying\nanswered as *dog* · ATS **0.712** (esc50\\-clap)"
    same = track_heading({**item, "answered_as": "a dog"})  # its own text: nothing to say
    assert same == "### a dog\nATS **0.712** (esc50\\-clap)"
    far = track_heading(
        {**item, "title": "the stock market", "answered_as": "a clock", "far": True}
    )
    assert far == (
        "### the stock market\nanswered as *a clock* (far from every text the model was "
        "trained on) · ATS **0.712** (esc50\\-clap)"
    )


def test_an_upload_the_pruner_removed_asks_for_it_again(tmp_path: Path) -> None:
    import os
    import time

    ws = Workspace(parent=tmp_path, keep_seconds=60)
    config = AppConfig(models=("test-tiny",), clap="test-tiny", keep_minutes=1, examples=None)
    service = SeparationService(config, ws)
    upload = ws.root / "gradio" / "a1b2" / "rec.wav"
    upload.parent.mkdir(parents=True)
    synth.write_wav(upload, synth.scene(2.0, 16000, seed=1)[None], 16000)
    old = time.time() - 120  # uploaded two minutes ago, the page left open since
    os.utime(upload, (old, old))
    assert ws.prune() > 0 and not upload.exists()
    with pytest.raises(AudioError) as caught:
        service.separate(str(upload), "a dog barking")
    assert str(caught.value) == (
        "rec.wav is no longer on the server: recordings are kept up to 1 min "
        "(querysep app --keep-minutes; less when the app's folder passes --max-disk-gb); "
        "upload it again"
    )
    with pytest.raises(AudioError, match="not found"):  # a path that was never an upload
        service.separate(str(tmp_path / "rec.wav"), "a dog barking")
    ws.close()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_disk_gb", math.inf),
        ("max_disk_gb", math.nan),
        ("max_upload_mb", math.inf),
        ("max_upload_mb", 1e14),
        ("max_minutes", math.nan),
        ("max_minutes", -1.0),
        ("max_segment_seconds", 0.0),
        ("max_segment_seconds", 7200.0),  # more than any Separator takes
        ("keep_minutes", math.inf),
        ("stop_grace_seconds", math.inf),
        ("stop_grace_seconds", -1.0),
        ("concurrency", 0),
        ("concurrency", 2.5),
        ("max_queries", 0),
        ("max_queue", True),
    ],
)
def test_settings_that_are_not_finite_or_out_of_range_are_refused(
    setting: str, value: float
) -> None:
    with pytest.raises(ConfigError, match=rf"^{setting}\b.* must be a (whole )?number from"):
        AppConfig(**{setting: value}, examples=None)


def test_the_largest_settings_are_taken() -> None:
    from querysep.app.service import LIMITS

    config = AppConfig(**{name: most for name, (_, most, _) in LIMITS.items()}, examples=None)
    assert config.max_disk_gb == 10_000 and int(config.max_disk_gb * 2**30) > 0


def test_normalize_level_reaches_the_separator(service: SeparationService, tmp_path: Path) -> None:
    """A quiet recording separated with ``normalize``: what ``Separator(normalize=True)``
    gives, and not what the default (off, as in ``querysep separate``) gives."""
    from querysep import Separator

    x = synth.scene(3.0, 16000, seed=5)
    x = (0.003 * x / np.abs(x).max()).astype(np.float32)  # about -50 dBFS
    path = synth.write_wav(tmp_path / "quiet.wav", x, 16000, subtype="FLOAT")
    segments = {"segment_seconds": 1.0, "overlap_seconds": 0.25}
    outputs = {}
    for normalize in (False, True):
        result = service.separate(path, "a dog barking", normalize=normalize, **segments)
        assert result.report()["normalize"] is normalize
        got, _ = sf.read(result.outputs[0], dtype="float32")
        want = Separator("test-tiny", normalize=normalize, **segments).separate_tensor(
            x, 16000, "a dog barking"
        )[0, 0]
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-7)
        outputs[normalize] = got
    assert np.abs(outputs[True] - outputs[False]).max() > 0.1 * np.abs(outputs[False]).max()
    default = service.separate(path, "a dog barking", **segments)  # off unless asked for
    np.testing.assert_array_equal(sf.read(default.outputs[0], dtype="float32")[0], outputs[False])
    with pytest.raises(ConfigError, match=r"^normalize must be true or false, got 'false'$"):
        service.separate(path, "a dog barking", normalize="false", **segments)  # raw HTTP
