"""The ATS column: values, the reference row, one CLAP model per folder, upgrading old folders."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from querysep.clap import load_clap
from querysep.clap.tiny import TinyClap
from querysep.cli import app
from querysep.errors import ConfigError, DataError
from querysep.evaluation import ATSHook, evaluate, resolve_systems

from .conftest import SR, ValSet, dcase_mix, find, read_mono


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


class Scaled:
    """A deterministic 'model': half the mixture."""

    sample_rate = None
    name = "half"

    def __init__(self) -> None:
        self.calls = 0

    def separate(self, mixture, sample_rate, query, *, target):
        self.calls += 1
        return 0.5 * mixture


def _systems(system=None):
    return resolve_systems([system or Scaled()], reference=True)


def _run(valset: ValSet, out: Path, systems, hooks=(), **kw):
    return evaluate(
        valset.mixture_list,
        valset.audio_dir,
        systems,
        out,
        progress=False,
        baselines=False,
        metric_hooks=list(hooks),
        **kw,
    )


def test_ats_values_and_the_reference_row(valset: ValSet, tmp_path: Path) -> None:
    clap = load_clap("test-tiny")
    summary = _run(valset, tmp_path / "out", _systems(), [ATSHook(clap)])
    rows = read_rows(tmp_path / "out" / "per_clip.csv")
    assert [r["system"] for r in rows[:4]] == ["mixture", "half", "oracle-irm", "reference"]
    for source, noise, snr, caption in valset.rows:
        mixture, target = dcase_mix(
            read_mono(find(valset.audio_dir, source)),
            read_mono(find(valset.audio_dir, noise)),
            float(snr),
        )
        text = clap.embed_text([caption])[0]
        expect = {
            "mixture": float(clap.embed_audio(mixture, SR)[0] @ text),
            "half": float(clap.embed_audio(0.5 * mixture, SR)[0] @ text),
            "reference": float(clap.embed_audio(target, SR)[0] @ text),
        }
        mine = {r["system"]: r for r in rows if r["source"] == source}
        for name, value in expect.items():
            assert float(mine[name]["ats"]) == pytest.approx(value, abs=1e-5)
        # gain does not move ATS: half the mixture scores as the mixture does
        assert float(mine["half"]["ats"]) == pytest.approx(float(mine["mixture"]["ats"]), abs=1e-5)
        assert all(math.isnan(float(mine["reference"][m])) for m in ("sdr", "sdri", "si_sdr"))
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.splitlines()[0] == "| System | SDR | SDRi | SI-SDR | ATS |"
    assert "| reference | - | - | - | " in table and "test-tiny" in table
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert data["metric_models"]["ats"]["name"] == "test-tiny"
    assert data["systems"]["reference"]["sdr"] is None
    assert data["systems"]["reference"]["ats"] == pytest.approx(summary.scores["reference"]["ats"])


class SilentOnFirst:
    """Silence for the list's first source, half the mixture for the others."""

    sample_rate = None
    name = "gate"

    def __init__(self, first: str) -> None:
        self.first = first

    def separate(self, mixture, sample_rate, query, *, target):
        return 0.0 * mixture if np.array_equal(target, self.first) else 0.5 * mixture


def test_a_silent_output_has_no_ats_and_the_mean_says_so(valset: ValSet, tmp_path: Path) -> None:
    source, noise, snr, _ = valset.rows[0]
    _, first_target = dcase_mix(
        read_mono(find(valset.audio_dir, source)),
        read_mono(find(valset.audio_dir, noise)),
        float(snr),
    )
    summary = _run(
        valset, tmp_path / "out", _systems(SilentOnFirst(first_target)), [ATSHook("test-tiny")]
    )
    rows = read_rows(tmp_path / "out" / "per_clip.csv")
    gate = {r["source"]: float(r["ats"]) for r in rows if r["system"] == "gate"}
    assert math.isnan(gate[source])
    others = [v for k, v in gate.items() if k != source]
    assert len(others) == len(valset.rows) - 1 and all(math.isfinite(v) for v in others)
    n = len(valset.rows)
    assert summary.scores["gate"]["ats"] == pytest.approx(float(np.mean(others)))
    assert summary.scores["gate"]["n_ats"] == n - 1 and summary.scores["gate"]["n"] == n
    assert "n_ats" not in summary.scores["mixture"]  # every clip scored
    assert "n_sdr" not in summary.scores["reference"]  # no SDR at all: no count
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert data["systems"]["gate"]["n_ats"] == n - 1
    table = (tmp_path / "out" / "table.md").read_text()
    assert f"ATS of gate: the mean of {n - 1} of its {n} clips" in table
    # resuming reads the NaN back as a finished score: nothing is computed again
    again = _run(
        valset, tmp_path / "out", _systems(SilentOnFirst(first_target)), [ATSHook("test-tiny")]
    )
    assert again.num_computed == 0 and again.scores["gate"]["n_ats"] == n - 1


def test_another_clap_model_is_refused_in_the_same_folder(valset: ValSet, tmp_path: Path) -> None:
    _run(valset, tmp_path / "out", _systems(), [ATSHook("test-tiny")])
    other = TinyClap(dim=16)
    other.name = "tiny-16"
    with pytest.raises(ConfigError, match="computed with 'test-tiny'"):
        _run(valset, tmp_path / "out", _systems(), [ATSHook(other)])


def test_a_retrained_model_under_the_same_name_is_refused(valset: ValSet, tmp_path: Path) -> None:
    import torch

    from querysep.clap.small import SmallClap, SmallClapConfig

    config = SmallClapConfig(
        window_seconds=0.5, n_fft=256, hop_length=128, n_mels=16, channels=[4, 8], dim=8
    )
    folders = []
    for seed in (0, 1):  # the same architecture and name, retrained: other weights
        torch.manual_seed(seed)
        folders.append(SmallClap(config).save_pretrained(tmp_path / f"v{seed}"))

    def named(folder: Path):
        model = load_clap(str(folder))
        model.name = "my-clap"
        return model

    assert named(folders[0]).describe() != named(folders[1]).describe()
    _run(valset, tmp_path / "out", _systems(), [ATSHook(named(folders[0]))])
    with pytest.raises(ConfigError, match="another version of 'my-clap'"):
        _run(valset, tmp_path / "out", _systems(), [ATSHook(named(folders[1]))])
    _run(valset, tmp_path / "out", _systems(), [ATSHook(named(folders[0]))])  # same: resumes


def _old_folder(valset: ValSet, out: Path) -> str:
    """An evaluation folder as written before ATS existed."""
    _run(valset, out, resolve_systems([Scaled()]))
    return (out / "per_clip.csv").read_text()


def test_an_old_folder_is_upgraded_in_place(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = read_rows_text(_old_folder(valset, out))
    system = Scaled()
    summary = _run(valset, out, _systems(system), [ATSHook("test-tiny")])
    after = read_rows(out / "per_clip.csv")
    assert summary.num_upgraded == len(before) == 12
    # every old row is still there, scores untouched, now with an ATS
    for old, new in zip(before, after, strict=False):
        assert {k: new[k] for k in old} == old and math.isfinite(float(new["ats"]))
    assert [r["system"] for r in after[len(before) :]] == ["reference"] * 4
    assert system.calls == 4  # run once per clip for its output, never re-scored otherwise
    assert not (out / "per_clip.upgrade.csv").exists()
    # and it equals a fresh run with ATS from the start
    fresh = tmp_path / "fresh"
    _run(valset, fresh, _systems(), [ATSHook("test-tiny")])
    key = lambda r: (r["source"], r["system"])  # noqa: E731
    fresh_rows = {key(r): r for r in read_rows(fresh / "per_clip.csv")}
    for row in after:
        assert float(row["ats"]) == pytest.approx(float(fresh_rows[key(row)]["ats"]), abs=1e-6)


def read_rows_text(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(text.splitlines()))


def test_an_interrupted_upgrade_resumes_without_redoing_rows(
    valset: ValSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    original = _old_folder(valset, out)
    hook = ATSHook("test-tiny")
    calls = {"n": 0}
    real = ATSHook.__call__

    def flaky(self, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, **kw)

    monkeypatch.setattr(ATSHook, "__call__", flaky)
    with pytest.raises(KeyboardInterrupt):
        _run(valset, out, _systems(), [hook])
    assert (out / "per_clip.csv").read_text() == original  # untouched until the upgrade is done
    assert len(read_rows(out / "per_clip.upgrade.csv")) == 4
    calls["n"] = 100
    _run(valset, out, _systems(), [hook])
    assert calls["n"] == 100 + 8 + 4  # the 8 old rows left, then the 4 reference rows
    assert len(read_rows(out / "per_clip.csv")) == 16


def test_a_system_that_changed_since_is_refused(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _old_folder(valset, out)

    class Louder(Scaled):
        def separate(self, mixture, sample_rate, query, *, target):
            return 0.5 * mixture + 0.1 * target

    with pytest.raises(DataError, match="no longer reproduces"):
        _run(valset, out, _systems(Louder()), [ATSHook("test-tiny")])


class Labelled(Scaled):
    """A system whose row name is not its spec, as IRM-LDM rows get ``NAME [output]``."""

    name = "halved [x0.5]"


@pytest.fixture
def halved(monkeypatch: pytest.MonkeyPatch) -> list[Labelled]:
    """Registers the spec ``halved`` (a :class:`Labelled` row); lists the systems built."""
    from querysep.evaluation import register_system
    from querysep.evaluation import systems as systems_module

    monkeypatch.setattr(systems_module, "_REGISTRY", dict(systems_module._REGISTRY))
    built: list[Labelled] = []
    register_system("halved", lambda argument, options: built.append(Labelled()) or built[-1])
    return built


def test_an_upgrade_rebuilds_a_labelled_row_from_its_recorded_spec(
    valset: ValSet, tmp_path: Path, halved: list[Labelled]
) -> None:
    out = tmp_path / "out"
    _run(valset, out, resolve_systems(["halved"]))  # no ATS
    # this run names only the mixture row: the labelled row is built from its spec
    summary = _run(valset, out, _systems(resolve_systems(["mixture"])[0]), [ATSHook("test-tiny")])
    assert summary.num_upgraded == 12
    assert len(halved) == 2 and halved[1].calls == 4  # built again, run once per clip
    rows = read_rows(out / "per_clip.csv")
    assert all(math.isfinite(float(r["ats"])) for r in rows if r["system"] == "halved [x0.5]")
    specs = json.loads((out / "settings.json").read_text())["specs"]
    assert specs["halved [x0.5]"] == "halved" and specs["oracle-irm"] == "oracle-irm"


def test_a_relative_model_folder_is_rebuilt_from_another_working_directory(
    valset: ValSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec is recorded with its folder made absolute; the row keeps the name typed."""
    from querysep.pretrained import build_test_tiny

    build_test_tiny().save_pretrained(tmp_path / "proj" / "m1")
    folder = str(tmp_path / "proj" / "m1")
    for spec, recorded in (("proj/m1", folder), ("model:proj/m1", f"model:{folder}")):
        monkeypatch.chdir(tmp_path)
        out = tmp_path / spec.replace(":", "_").replace("/", "_")
        _run(valset, out, resolve_systems([spec]))  # no ATS
        specs = json.loads((out / "settings.json").read_text())["specs"]
        assert specs["proj/m1"] == recorded  # "model:X" names its row X
        monkeypatch.chdir(tmp_path / "proj")  # "proj/m1" names nothing from here
        mixture = resolve_systems(["mixture"])[0]
        summary = _run(valset, out, _systems(mixture), [ATSHook("test-tiny")])
        assert summary.num_upgraded == 12, spec
        rows = read_rows(out / "per_clip.csv")
        assert {r["system"] for r in rows} == {"proj/m1", "oracle-irm", "mixture", "reference"}
        assert all(math.isfinite(float(r["ats"])) for r in rows if r["system"] == "proj/m1")


def test_an_older_folder_without_specs_asks_for_the_rows_spec(
    valset: ValSet, tmp_path: Path, halved: list[Labelled]
) -> None:
    out = tmp_path / "out"
    _run(valset, out, resolve_systems(["halved"]))
    path = out / "settings.json"
    settings = json.loads(path.read_text())
    settings.pop("specs", None)  # as written before specs were recorded
    path.write_text(json.dumps(settings))
    before = (out / "per_clip.csv").read_text()
    mixture = resolve_systems(["mixture"])[0]
    with pytest.raises(DataError) as info:
        _run(valset, out, _systems(mixture), [ATSHook("test-tiny")])
    assert "\n" not in str(info.value)
    assert "its name does not build it (unknown model 'halved [x0.5]'" in str(info.value)
    assert str(info.value).endswith(
        "pass -m SPEC for the row 'halved [x0.5]' (the --model it was evaluated with)"
    )
    assert (out / "per_clip.csv").read_text() == before
    # naming the row's spec in the run adds its ATS (the failed upgrade's first row is kept)
    systems = resolve_systems(["mixture", "halved"], reference=True)
    assert _run(valset, out, systems, [ATSHook("test-tiny")]).num_upgraded == 11
    rows = read_rows(out / "per_clip.csv")
    assert all(math.isfinite(float(r["ats"])) for r in rows if r["system"] == "halved [x0.5]")


def _evaluate_argv(valset: ValSet) -> list[str]:
    """``querysep evaluate`` on the validation set (arguments after the program name)."""
    return [
        "evaluate",
        "--mixtures",
        str(valset.mixture_list),
        "--audio-dir",
        str(valset.audio_dir),
    ]


def test_cli_ats_column_clap_choice_and_no_ats(valset: ValSet, tmp_path: Path) -> None:
    base = [*_evaluate_argv(valset), "-m", "test-tiny", "--no-progress"]
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "a"), "--clap", "test-tiny"])
    assert result.exit_code == 0, result.output
    systems = [r["system"] for r in read_rows(tmp_path / "a" / "per_clip.csv")]
    assert systems[:4] == ["mixture", "test-tiny", "oracle-irm", "reference"]
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "b"), "--no-ats"])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "b" / "per_clip.csv")
    assert "ats" not in rows[0] and "reference" not in {r["system"] for r in rows}
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "c"), "--clap", "nope"])
    assert result.exit_code == 2 and "unknown audio-text model" in result.output
    assert not (tmp_path / "c").exists()


def test_reference_row_needs_the_target() -> None:
    from querysep.evaluation import ReferenceSystem

    with pytest.raises(ConfigError):
        ReferenceSystem().separate(np.zeros(4), SR, "x", target=None)


def test_a_failed_upgrade_does_not_tie_the_folder_to_its_clap_model(
    valset: ValSet, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _old_folder(valset, out)
    tone = find(valset.audio_dir, "tone")
    kept = tone.read_bytes()
    tone.unlink()
    with pytest.raises(DataError, match="no audio file for 'tone'"):
        _run(valset, out, _systems(), [ATSHook("test-tiny")])
    assert not (out / "metric_models.json").exists()  # no ATS was written
    tone.write_bytes(kept)
    other = TinyClap(dim=16)
    other.name = "tiny-16"
    _run(valset, out, _systems(), [ATSHook(other)])
    assert len(read_rows(out / "per_clip.csv")) == 16


def test_cli_upgrade_rebuilds_models_with_the_runs_options(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    base = [*_evaluate_argv(valset), "-o", str(out), "--no-progress", "--no-baselines"]
    first = CliRunner().invoke(
        app, [*base, "-m", "test-tiny", "--no-ats", "--segment-seconds", "0.3"]
    )
    assert first.exit_code == 0, first.output
    # this run names only the mixture row; the upgrade rebuilds test-tiny for its ATS
    second = CliRunner().invoke(
        app, [*base, "-m", "mixture", "--clap", "test-tiny", "--segment-seconds", "0.3"]
    )
    assert second.exit_code == 0, second.output
    settings = json.loads((out / "settings.json").read_text())
    assert settings["systems"]["test-tiny"]["segment_seconds"] == 0.3
    rows = read_rows(out / "per_clip.csv")
    assert {r["system"] for r in rows} == {"test-tiny", "mixture", "reference"}
    assert all(math.isfinite(float(r["ats"])) for r in rows if r["system"] == "test-tiny")


def test_an_upgrade_rebuilds_each_model_with_its_recorded_settings(
    valset: ValSet, tmp_path: Path
) -> None:
    from querysep.evaluation import SystemOptions

    out = tmp_path / "out"
    systems = resolve_systems(["test-tiny"], options=SystemOptions(segment_seconds=0.3))
    _run(valset, out, systems)  # no ATS
    # this run names the mixture row only, with another segment length of its own: the
    # upgrade rebuilds test-tiny at the 0.3 s its rows were computed with
    summary = _run(
        valset,
        out,
        _systems(resolve_systems(["mixture"])[0]),
        [ATSHook("test-tiny")],
        options=SystemOptions(segment_seconds=0.5),
    )
    assert summary.num_upgraded == 12  # mixture, test-tiny and oracle-irm rows
