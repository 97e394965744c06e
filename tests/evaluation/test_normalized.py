"""``normalized:SPEC`` rows: a model run with ``Separator(normalize=True)``, beside its own."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from querysep import Separator
from querysep.cli import app
from querysep.errors import ConfigError
from querysep.evaluation import ATSHook, ModelSystem, evaluate, make_system, resolve_systems

from .conftest import SR, ref_sdr, write_csv

PEAK = 0.003  # about -50 dBFS: far below the level the models were trained at


@dataclass
class QuietSet:
    audio_dir: Path
    mixture_list: Path
    clips: dict[str, tuple[np.ndarray, np.ndarray]]  # caption -> (mixture, target)


@pytest.fixture
def quiet(tmp_path: Path) -> QuietSet:
    """Two triplet rows (mixture, target, caption) whose mixtures peak at :data:`PEAK`."""
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(7)
    t = np.arange(SR // 2) / SR
    rows, clips = [], {}
    for k, caption in enumerate(("a steady tone", "a higher tone")):
        target = np.sin(2 * np.pi * (330 + 440 * k) * t)
        mixture = target + 0.8 * rng.standard_normal(t.size)
        gain = PEAK / np.abs(mixture).max()
        mixture, target = (mixture * gain).astype(np.float32), (target * gain).astype(np.float32)
        sf.write(audio / f"m{k}.wav", mixture, SR, subtype="FLOAT")
        sf.write(audio / f"t{k}.wav", target, SR, subtype="FLOAT")
        rows.append((f"m{k}", f"t{k}", caption))
        clips[caption] = (mixture, target)
    mixture_list = tmp_path / "quiet.csv"
    write_csv(mixture_list, ["mixture", "target", "caption"], rows)
    return QuietSet(audio, mixture_list, clips)


def _run(data: QuietSet, out: Path, systems, hooks=(), **kw):
    return evaluate(
        data.mixture_list,
        data.audio_dir,
        systems,
        out,
        progress=False,
        baselines=False,
        metric_hooks=list(hooks),
        **kw,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_normalized_row_beside_the_plain_one_on_a_quiet_mixture(
    quiet: QuietSet, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    summary = _run(quiet, out, ["test-tiny", "normalized:test-tiny"])
    assert list(summary.scores) == ["test-tiny", "test-tiny [normalized]"]
    table = (out / "table.md").read_text()
    assert "| test-tiny |" in table and "| test-tiny [normalized] |" in table

    rows = {(r["caption"], r["system"]): r for r in _rows(out / "per_clip.csv")}
    plain, normalized = Separator("test-tiny"), Separator("test-tiny", normalize=True)
    for caption, (mixture, target) in quiet.clips.items():
        estimates = {}
        for name, sep in (("test-tiny", plain), ("test-tiny [normalized]", normalized)):
            estimate = sep.separate_tensor(mixture, SR, caption)[0, 0].numpy()
            want = ref_sdr(target, estimate)
            assert float(rows[(caption, name)]["sdr"]) == pytest.approx(want, abs=1e-3), name
            estimates[name] = estimate
        # the network saw another input level: another estimate, and another score
        a, b = estimates["test-tiny"], estimates["test-tiny [normalized]"]
        assert np.abs(a - b).max() > 0.1 * np.abs(a).max()
        assert abs(ref_sdr(target, a) - ref_sdr(target, b)) > 0.01

    # the row's own separate() is Separator(normalize=True)'s output
    system = make_system("normalized:test-tiny")
    mixture, _ = quiet.clips["a steady tone"]
    got = system.separate(mixture, SR, "a steady tone", target=None)
    want = normalized.separate_tensor(mixture, SR, "a steady tone")[0, 0].numpy()
    np.testing.assert_array_equal(got, want)


def test_the_spec_prefix_names_the_row_and_records_the_setting() -> None:
    system = make_system(" normalized:test-tiny ")
    assert isinstance(system, ModelSystem) and system.separator.normalize
    assert system.name == "test-tiny [normalized]" and system.spec == "normalized:test-tiny"
    assert system.settings["normalize"] is True
    # a plain row's name and settings are as before: older folders still resume
    plain = make_system("model:test-tiny")
    assert plain.name == "test-tiny" and not plain.separator.normalize
    assert "normalize" not in plain.settings
    assert ModelSystem("test-tiny", name="mine", normalize=True).name == "mine"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("normalized:", "system 'normalized:' needs a model after the colon"),
        ("normalized:mixture", "not the row 'mixture'"),
        ("normalized:reference", "not the row 'reference'"),
        ("normalized:oracle-irm", "not the row 'oracle-irm'"),
        ("normalized:oracle-irm:test-tiny", "not the row 'oracle-irm:test-tiny'"),
        ("normalized:normalized:test-tiny", "not the row 'normalized:test-tiny'"),
        ("normalized:model:test-tiny", "write normalized:test-tiny"),
    ],
)
def test_only_a_separator_model_can_be_normalized(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        make_system(spec)
    assert "\n" not in str(info.value)


def test_a_resume_with_another_normalize_setting_is_refused(
    quiet: QuietSet, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _run(quiet, out, ["normalized:test-tiny"], limit=1)
    stored = json.loads((out / "settings.json").read_text())
    assert stored["systems"]["test-tiny [normalized]"]["normalize"] is True
    before = (out / "per_clip.csv").read_bytes()
    # a row of that name that does not normalize would mix two kinds of scores in one row
    unnormalized = ModelSystem("test-tiny", name="test-tiny [normalized]")
    with pytest.raises(ConfigError, match=r"computed with normalize .*, not without:") as info:
        _run(quiet, out, [unnormalized])
    assert "another output folder" in str(info.value)
    assert (out / "per_clip.csv").read_bytes() == before
    # and the other way round: a plain row is not resumed normalized
    _run(quiet, out, [ModelSystem("test-tiny", name="mine")], limit=1)
    assert "normalize" not in json.loads((out / "settings.json").read_text())["systems"]["mine"]
    with pytest.raises(ConfigError, match=r"computed without normalize .*, not with:"):
        _run(quiet, out, [ModelSystem("test-tiny", name="mine", normalize=True)])
    # the same setting resumes
    summary = _run(quiet, out, ["normalized:test-tiny"])
    assert summary.num_resumed == 1 and summary.num_computed == 1


def test_settings_json_records_a_spec_that_rebuilds_the_normalized_row(
    quiet: QuietSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from querysep.pretrained import build_test_tiny

    build_test_tiny().save_pretrained(tmp_path / "proj" / "m1")
    folder = str(tmp_path / "proj" / "m1")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    _run(quiet, out, resolve_systems(["normalized:proj/m1"]))  # no ATS
    specs = json.loads((out / "settings.json").read_text())["specs"]
    assert specs["proj/m1 [normalized]"] == f"normalized:{folder}"
    # from elsewhere, a run naming another row rebuilds this one from its spec to add its
    # ATS: its output must reproduce the stored SDR, which an unnormalized model does not
    monkeypatch.chdir(tmp_path / "proj")
    systems = resolve_systems(["mixture"], baselines=False, reference=True)
    summary = _run(quiet, out, systems, [ATSHook("test-tiny")])
    assert summary.num_upgraded == 3 * 2  # mixture, proj/m1 [normalized], oracle-irm: 2 clips
    rows = [r for r in _rows(out / "per_clip.csv") if r["system"] == "proj/m1 [normalized]"]
    assert len(rows) == 2 and all(math.isfinite(float(r["ats"])) for r in rows)


def test_cli_puts_both_rows_in_one_table(quiet: QuietSet, tmp_path: Path) -> None:
    args = [
        "evaluate",
        "--mixtures",
        str(quiet.mixture_list),
        "--audio-dir",
        str(quiet.audio_dir),
        "-o",
        str(tmp_path / "out"),
        "--no-progress",
        "--no-ats",
        "--no-baselines",
    ]
    result = CliRunner().invoke(app, [*args, "-m", "test-tiny", "-m", "normalized:test-tiny"])
    assert result.exit_code == 0, result.output
    assert "| test-tiny |" in result.stdout and "| test-tiny [normalized] |" in result.stdout
    result = CliRunner().invoke(app, [*args, "-m", "normalized:"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "querysep: error: system 'normalized:' needs a model after the colon, "
        "e.g. normalized:esc50-minilm"
    ]
    assert "normalized:" in CliRunner().invoke(app, ["evaluate", "--help"]).stdout
    # the upstream-options check looks through every prefix: the row's own message comes first
    checkpoint = tmp_path / "x.ckpt"
    checkpoint.write_bytes(b"")
    result = CliRunner().invoke(
        app,
        [
            *args,
            "-m",
            f"normalized:model:audiosep:{checkpoint}",
            "--clap-checkpoint",
            str(checkpoint),
        ],
    )
    assert result.exit_code == 2
    assert "write normalized:audiosep:" in result.stderr, result.stderr


def test_a_normalized_row_built_in_python_is_rebuilt_for_ats(
    quiet: QuietSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from querysep.pretrained import build_test_tiny

    build_test_tiny().save_pretrained(tmp_path / "m1")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    _run(quiet, out, [ModelSystem("m1", normalize=True)])  # no ATS, no spec given
    systems = resolve_systems(["mixture"], baselines=False, reference=True)
    summary = _run(quiet, out, systems, [ATSHook("test-tiny")])
    assert summary.num_upgraded == 2  # m1 [normalized]: 2 clips (mixture is a new row)
    rows = [r for r in _rows(out / "per_clip.csv") if r["system"] == "m1 [normalized]"]
    assert len(rows) == 2 and all(math.isfinite(float(r["ats"])) for r in rows)


def test_a_rebuilt_row_must_end_in_the_same_labels() -> None:
    """An IRM-LDM row normalized ends in two labels; the rebuilt row must match both."""
    from querysep.evaluation.runner import _row_label

    assert _row_label("irm-ldm:m [vocoder] [normalized]") == " [vocoder] [normalized]"
    assert _row_label("/abs/m1 [normalized]") == _row_label("m1 [normalized]") == " [normalized]"
    assert _row_label("irm-ldm:m [griffin-lim] [normalized]") != " [vocoder] [normalized]"
    assert _row_label("test-tiny") == ""
