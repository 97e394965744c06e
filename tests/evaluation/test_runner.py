"""The evaluation runner against metrics and mixtures computed independently in the tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf

from querysep.errors import DataError
from querysep.evaluation import MixtureSystem, evaluate, make_system

from .conftest import (
    SR,
    ValSet,
    dcase_mix,
    find,
    read_mono,
    ref_irm,
    ref_sdr,
    ref_si_sdr,
    write_csv,
)

LIST_COLUMNS = ["source", "noise", "snr", "caption"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def by_key(rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["source"], r["system"]): r for r in rows}


class Counting:
    """A system that returns the mixture and counts its calls."""

    sample_rate = None

    def __init__(self, name: str = "counted") -> None:
        self.name = name
        self.calls: list[str] = []

    def separate(self, mixture, sample_rate, query, *, target):
        self.calls.append(query)
        return mixture


def test_per_clip_scores_match_independent_computation(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = evaluate(
        valset.mixture_list,
        valset.audio_dir,
        ["mixture", "oracle-irm", "test-tiny"],
        out,
        progress=False,
    )
    rows = read_rows(out / "per_clip.csv")
    assert list(rows[0]) == [*LIST_COLUMNS, "system", "sdr", "sdri", "si_sdr"]
    assert len(rows) == len(valset.rows) * 3
    # grouped by clip: each clip's three systems are consecutive, in the given order
    assert [r["system"] for r in rows[:3]] == ["mixture", "oracle-irm", "test-tiny"]
    oracle = make_system("oracle-irm")  # the default model's STFT: 512 / 256 at 16 kHz
    assert (oracle.stft.n_fft, oracle.stft.hop_length, oracle.sample_rate) == (512, 256, SR)
    tiny = make_system("test-tiny")
    got = by_key(rows)
    for source, noise, snr, caption in valset.rows:
        src = read_mono(find(valset.audio_dir, source))
        noi = read_mono(find(valset.audio_dir, noise))
        mix, tgt = dcase_mix(src, noi, float(snr))
        estimates = {
            "mixture": mix,
            "oracle-irm": ref_irm(tgt, mix, 512, 256),  # written out in conftest
            "test-tiny": tiny.separate(mix, SR, caption, target=None),
        }
        for name, est in estimates.items():
            row = got[(source, name)]
            assert (row["noise"], row["snr"], row["caption"]) == (noise, snr, caption)
            assert float(row["sdr"]) == pytest.approx(ref_sdr(tgt, est), abs=1e-3)
            assert float(row["si_sdr"]) == pytest.approx(ref_si_sdr(tgt, est), abs=1e-3)
            sdri = ref_sdr(tgt, est) - ref_sdr(tgt, mix)
            assert float(row["sdri"]) == pytest.approx(sdri, abs=1e-3)
        assert float(got[(source, "mixture")]["sdri"]) == 0.0  # exactly
    # the IRM clearly separates a tone from white noise
    assert float(got[("tone", "oracle-irm")]["sdri"]) > 6.0
    assert summary.scores["oracle-irm"]["sdri"] > 3.0
    assert summary.num_computed == 12 and summary.num_resumed == 0


def test_summary_and_table(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = evaluate(valset.mixture_list, valset.audio_dir, [Counting()], out, progress=False)
    rows = read_rows(out / "per_clip.csv")
    names = ["mixture", "counted", "oracle-irm"]  # baselines around the given system
    assert list(summary.scores) == names
    data = json.loads((out / "summary.json").read_text())
    assert data["mixture_list"] == str(valset.mixture_list.resolve())
    assert data["date"] and data["sample_rate"] == SR and data["num_clips"] == 4
    assert list(data["systems"]) == names
    table = (out / "table.md").read_text().splitlines()
    assert table[0] == "| System | SDR | SDRi | SI-SDR |"
    assert table[1] == "|---|---:|---:|---:|"
    for line, name in zip(table[2:], names, strict=True):
        entry = data["systems"][name]
        assert entry["n"] == 4
        for metric in ("sdr", "sdri", "si_sdr"):
            values = [float(r[metric]) for r in rows if r["system"] == name]
            assert entry[metric] == pytest.approx(np.mean(values), abs=1e-12)
        cells = [f"{entry[m]:.3f}" for m in ("sdr", "sdri", "si_sdr")]
        assert line == f"| {name} | " + " | ".join(cells) + " |"
    assert "| mixture | " in table[2] and table[2].split(" | ")[2] == "0.000"
    assert summary.table() == (out / "table.md").read_text()


def test_resume_computes_only_the_rest(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = Counting()
    evaluate(
        valset.mixture_list,
        valset.audio_dir,
        ["mixture", first],
        out,
        progress=False,
        baselines=False,
    )
    assert len(first.calls) == 4
    path = out / "per_clip.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    # keep the header and the first three rows (one with a marker value), then a torn row
    kept = lines[:4]
    fields = kept[1].split(",")
    fields[-3] = "999.0"  # sdr of (clip 1, mixture): must be reused, not recomputed
    kept[1] = ",".join(fields)
    path.write_text("".join(kept) + "hiss,beep,10,white", encoding="utf-8")

    again = Counting()
    summary = evaluate(
        valset.mixture_list,
        valset.audio_dir,
        ["mixture", again],
        out,
        progress=False,
        baselines=False,
    )
    assert summary.num_resumed == 3 and summary.num_computed == 5
    assert len(again.calls) == 4 - 1  # clip 1 was scored for "counted"; clip 2 was not
    rows = read_rows(path)
    assert len(rows) == 8
    assert len({(r["source"], r["system"]) for r in rows}) == 8
    assert rows[0]["sdr"] == "999.0"
    assert summary.scores["mixture"]["n"] == 4
    assert summary.scores["mixture"]["sdr"] > 200  # the marker is in the mean

    third = Counting()
    summary = evaluate(
        valset.mixture_list,
        valset.audio_dir,
        ["mixture", third],
        out,
        progress=False,
        baselines=False,
    )
    assert third.calls == [] and summary.num_computed == 0 and summary.num_resumed == 8


def test_a_last_row_cut_inside_its_final_number_is_computed_again(
    valset: ValSet, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _mixture_run(valset, out, systems=["mixture"])
    path = out / "per_clip.csv"
    text = path.read_text(encoding="utf-8")
    full = read_rows(path)[-1]["si_sdr"]
    assert len(full.split(".")[1]) > 3  # repr() of a float: many digits to lose
    cut = text[: -(len(full) - 3) - 1]  # the newline and all but 3 characters of SI-SDR
    assert cut.endswith(full[:3])
    path.write_text(cut, encoding="utf-8")  # still a number: only the newline says it is cut

    again = Counting("mixture")
    summary = _mixture_run(valset, out, systems=[again])
    assert summary.num_resumed == 3 and summary.num_computed == 1
    assert again.calls == [valset.rows[-1][3]]
    assert path.read_text(encoding="utf-8") == text
    assert read_rows(path)[-1]["si_sdr"] == full


def test_other_columns_in_existing_csv_is_an_error(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "per_clip.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="another mixture list"):
        evaluate(
            valset.mixture_list, valset.audio_dir, ["mixture"], out, progress=False, baselines=False
        )


def test_triplet_list_with_extra_column(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    (audio / "mix").mkdir(parents=True)
    rng = np.random.default_rng(1)
    t = np.arange(SR // 2) / SR
    rows = []
    for k in range(2):
        target = (0.4 * np.sin(2 * np.pi * (300 + 200 * k) * t)).astype(np.float32)
        mixture = (target + 0.2 * rng.standard_normal(t.size)).astype(np.float32)
        sf.write(audio / "mix" / f"m{k}.wav", mixture, SR, subtype="FLOAT")
        sf.write(audio / f"t{k}.wav", target, SR, subtype="FLOAT")
        rows.append((f"caption {k}", f"mix/m{k}.wav", f"t{k}", f"split{k}"))
    mixture_list = tmp_path / "triplets.csv"
    write_csv(mixture_list, ["caption", "mixture", "target", "split"], rows)
    out = tmp_path / "out"
    summary = evaluate(mixture_list, audio, ["mixture", "oracle-irm"], out, progress=False)
    got = read_rows(out / "per_clip.csv")
    assert list(got[0]) == [
        "caption",
        "mixture",
        "target",
        "split",
        "system",
        "sdr",
        "sdri",
        "si_sdr",
    ]
    assert [r["split"] for r in got] == ["split0", "split0", "split1", "split1"]
    for caption, mix_name, tgt_name, _ in rows:
        mix = read_mono(audio / mix_name)
        tgt = read_mono(audio / f"{tgt_name}.wav")
        row = next(r for r in got if r["caption"] == caption and r["system"] == "mixture")
        assert float(row["sdr"]) == pytest.approx(ref_sdr(tgt, mix), abs=1e-6)
        assert float(row["si_sdr"]) == pytest.approx(ref_si_sdr(tgt, mix), abs=1e-6)
    assert summary.scores["oracle-irm"]["sdri"] > 3.0


def test_missing_audio(valset: ValSet, tmp_path: Path) -> None:
    (valset.audio_dir / "beep.wav").unlink()
    with pytest.raises(DataError, match="beep"):
        evaluate(
            valset.mixture_list,
            valset.audio_dir,
            ["mixture"],
            tmp_path / "a",
            progress=False,
            baselines=False,
        )
    assert not (tmp_path / "a" / "per_clip.csv").exists()  # checked before any work
    summary = evaluate(
        valset.mixture_list,
        valset.audio_dir,
        ["mixture"],
        tmp_path / "b",
        progress=False,
        baselines=False,
        skip_missing=True,
    )
    assert summary.skipped == ["beep__clicks__-5dB", "hiss__beep__10dB"]
    assert summary.scores["mixture"]["n"] == 2
    data = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert data["num_skipped"] == 2


def test_limit_and_metric_hook(valset: ValSet, tmp_path: Path) -> None:
    class Peak:
        columns: ClassVar[dict[str, str]] = {"peak": "Peak"}

        def __call__(self, *, mixture, target, estimate, query, sample_rate):
            return {"peak": float(np.abs(estimate).max())}

    out = tmp_path / "out"
    summary = evaluate(
        valset.mixture_list,
        valset.audio_dir,
        [MixtureSystem()],
        out,
        progress=False,
        baselines=False,
        limit=2,
        metric_hooks=[Peak()],
    )
    rows = read_rows(out / "per_clip.csv")
    assert len(rows) == 2 and list(rows[0])[-1] == "peak"
    assert float(rows[0]["peak"]) == pytest.approx(0.9, abs=1e-6)  # peak-protected mixture
    assert (out / "table.md").read_text().splitlines()[0].endswith("| SI-SDR | Peak |")
    assert summary.scores["mixture"]["n"] == 2


def test_outputs_get_the_umasks_permissions(valset: ValSet, tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        summary = evaluate(
            valset.mixture_list, valset.audio_dir, ["mixture"], tmp_path / "out", progress=False
        )
    finally:
        os.umask(old)
    settings = tmp_path / "out" / "settings.json"
    for path in (summary.per_clip_path, summary.summary_path, summary.table_path, settings):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "per_clip.csv",
        "settings.json",
        "summary.json",
        "table.md",
    ]


def test_output_folder_under_a_file_is_refused_before_any_work(
    valset: ValSet, tmp_path: Path
) -> None:
    from querysep.errors import OutputError

    blocker = tmp_path / "FILE"
    blocker.write_text("x")
    system = Counting()
    with pytest.raises(OutputError, match=r"cannot write to .*FILE/out: .*FILE is a file"):
        evaluate(valset.mixture_list, valset.audio_dir, [system], blocker / "out", progress=False)
    assert system.calls == [] and blocker.read_text() == "x"


# --------------------------------------------------------- what a folder's scores depend on


def _mixture_run(valset: ValSet, out: Path, **kw):
    kw.setdefault("baselines", False)
    return evaluate(
        valset.mixture_list,
        kw.pop("audio_dir", valset.audio_dir),
        kw.pop("systems", ["mixture"]),
        out,
        progress=False,
        **kw,
    )


def test_a_folder_of_another_list_with_the_same_columns_is_refused(
    valset: ValSet, tmp_path: Path
) -> None:
    from .conftest import write_csv

    out = tmp_path / "out"
    _mixture_run(valset, out)
    before = (out / "per_clip.csv").read_bytes()
    other = tmp_path / "other" / "val.csv"  # the same name, another list
    other.parent.mkdir()
    source, noise, _, caption = valset.rows[0]
    write_csv(other, ["source", "noise", "snr", "caption"], [(source, noise, "7", caption)])
    with pytest.raises(DataError, match=r"holds scores of clips that .*val.csv does not list"):
        evaluate(other, valset.audio_dir, ["mixture"], out, progress=False, baselines=False)
    assert (out / "per_clip.csv").read_bytes() == before
    # the same list resumes, with a --limit too; and a list that only adds rows extends it
    assert _mixture_run(valset, out, limit=2).num_resumed == 2
    longer = tmp_path / "longer.csv"
    write_csv(
        longer, ["source", "noise", "snr", "caption"], [*valset.rows, (source, noise, "7", caption)]
    )
    more = evaluate(longer, valset.audio_dir, ["mixture"], out, progress=False, baselines=False)
    assert more.num_resumed == len(valset.rows) and more.num_computed == 1


def test_a_resume_at_another_rate_or_from_other_audio_is_refused(
    valset: ValSet, tmp_path: Path
) -> None:
    import shutil

    from querysep.errors import ConfigError

    out = tmp_path / "out"
    _mixture_run(valset, out, limit=2)
    before = (out / "per_clip.csv").read_bytes()
    with pytest.raises(ConfigError, match="computed at 16000 Hz, not 8000 Hz"):
        _mixture_run(valset, out, sample_rate=8000)
    copy = tmp_path / "copy"
    shutil.copytree(valset.audio_dir, copy)
    with pytest.raises(ConfigError, match=r"from the clips in .*audio, not .*copy"):
        _mixture_run(valset, out, audio_dir=copy)
    assert (out / "per_clip.csv").read_bytes() == before
    # the same settings resume
    assert _mixture_run(valset, out).num_resumed == 2
    # a folder written before settings.json: its summary.json says the rate
    (out / "settings.json").unlink()
    with pytest.raises(ConfigError, match="computed at 16000 Hz"):
        _mixture_run(valset, out, sample_rate=8000)


def test_a_model_row_resumed_with_another_segment_length_is_refused(
    valset: ValSet, tmp_path: Path
) -> None:
    from querysep.errors import ConfigError
    from querysep.evaluation import SystemOptions

    out = tmp_path / "out"
    short = SystemOptions(segment_seconds=0.3)
    _mixture_run(valset, out, systems=["test-tiny"], options=short, limit=2)
    stored = json.loads((out / "settings.json").read_text())
    assert stored["systems"]["test-tiny"]["segment_seconds"] == 0.3
    with pytest.raises(
        ConfigError, match=r"test-tiny .* segment_seconds 0\.3.*not segment_seconds 0\.2"
    ):
        _mixture_run(valset, out, systems=["test-tiny"], options=SystemOptions(segment_seconds=0.2))
    # a system with no rows there yet may bring its own settings; the same ones resume
    summary = _mixture_run(valset, out, systems=["test-tiny"], options=short)
    assert summary.num_resumed == 2 and summary.num_computed == 2


def _zero_weights(folder: Path) -> None:
    """Set every weight of a model folder to 0, keeping the file's save id (it still loads)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    save_file({k: v * 0 for k, v in load_file(str(path)).items()}, str(path), metadata=metadata)


def test_a_model_row_resumed_after_its_weights_changed_is_refused(
    valset: ValSet, tmp_path: Path
) -> None:
    from querysep.errors import ConfigError
    from querysep.pretrained import build_test_tiny

    model = build_test_tiny().save_pretrained(tmp_path / "model")
    kept = (model / "model.safetensors").read_bytes()
    out = tmp_path / "out"
    _mixture_run(valset, out, systems=[str(model)], limit=2)
    before = (out / "per_clip.csv").read_bytes()
    _zero_weights(model)
    with pytest.raises(ConfigError, match=r"computed from other model files .*another output"):
        _mixture_run(valset, out, systems=[str(model)])
    assert (out / "per_clip.csv").read_bytes() == before
    (model / "model.safetensors").write_bytes(kept)  # the same files again: resumed
    summary = _mixture_run(valset, out, systems=[str(model)])
    assert summary.num_resumed == 2 and summary.num_computed == 2


def test_a_folder_from_before_weight_digests_resumes_and_records_one(
    valset: ValSet, tmp_path: Path
) -> None:
    from querysep.errors import ConfigError
    from querysep.pretrained import build_test_tiny

    model = build_test_tiny().save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    _mixture_run(valset, out, systems=[str(model)], limit=2)
    path = out / "settings.json"
    settings = json.loads(path.read_text())
    digest = settings["systems"][str(model)].pop("weights_sha256")
    path.write_text(json.dumps(settings))  # as written before digests were recorded
    summary = _mixture_run(valset, out, systems=[str(model)], limit=3)
    assert summary.num_resumed == 2 and summary.num_computed == 1
    assert json.loads(path.read_text())["systems"][str(model)]["weights_sha256"] == digest
    _zero_weights(model)  # recorded now, so checked from now on
    with pytest.raises(ConfigError, match="computed from other model files"):
        _mixture_run(valset, out, systems=[str(model)])


def test_a_system_that_returns_nan_is_named(valset: ValSet, tmp_path: Path) -> None:
    from querysep.errors import AudioError

    class Broken:
        name, sample_rate = "broken", None

        def separate(self, mixture, sample_rate, query, *, target):
            out = mixture.copy()
            out[10] = np.nan
            return out

    with pytest.raises(AudioError, match=r"clip tone \(broken\): .*NaN or infinite"):
        _mixture_run(valset, tmp_path / "out", systems=[Broken()])


def test_a_folder_with_a_column_this_run_leaves_out_is_refused_with_why(
    valset: ValSet, tmp_path: Path
) -> None:
    class Peak:
        columns: ClassVar[dict[str, str]] = {"peak": "Peak"}

        def __call__(self, *, mixture, target, estimate, query, sample_rate):
            return {"peak": float(np.abs(estimate).max())}

    out = tmp_path / "out"
    _mixture_run(valset, out, metric_hooks=[Peak()], limit=2)
    before = (out / "per_clip.csv").read_bytes()
    with pytest.raises(DataError, match="has the column\\(s\\) peak, which this run does not"):
        _mixture_run(valset, out)
    assert (out / "per_clip.csv").read_bytes() == before


def test_blank_lines_before_the_header_are_skipped(valset: ValSet, tmp_path: Path) -> None:
    padded = tmp_path / "padded.csv"
    padded.write_text("\n\n" + valset.mixture_list.read_text(), encoding="utf-8")
    summary = evaluate(padded, valset.audio_dir, ["mixture"], tmp_path / "out", progress=False)
    assert summary.num_clips == 4 and summary.scores["mixture"]["n"] == 4


def test_settings_bind_only_a_folder_that_holds_scores(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _mixture_run(valset, out, limit=1)
    (out / "per_clip.csv").unlink()  # the scores are gone: any rate may start afresh
    assert _mixture_run(valset, out, sample_rate=8000).num_computed == 4
    assert json.loads((out / "settings.json").read_text())["sample_rate"] == 8000


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"sample_rate": 16000.5}, "whole number of Hz, got 16000.5"),
        ({"sample_rate": None}, "number of Hz, got None"),
        ({"sample_rate": True}, "number of Hz, got True"),
        ({"sample_rate": "16000"}, "number of Hz, got '16000'"),
        ({"sample_rate": 4000.0}, "4000.0 Hz is outside 8000-384000 Hz"),
        ({"limit": 1.5}, "limit must be a whole number >= 1, got 1.5"),
        ({"limit": 2.0}, "limit must be a whole number >= 1, got 2.0"),
        ({"limit": "1"}, "limit must be a whole number >= 1, got '1'"),
        ({"limit": True}, "limit must be a whole number >= 1, got True"),
        ({"limit": 0}, "limit must be a whole number >= 1, got 0"),
    ],
)
def test_bad_settings_are_one_line_config_errors_before_any_work(
    valset: ValSet, tmp_path: Path, settings: dict, match: str
) -> None:
    from querysep.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        _mixture_run(valset, tmp_path / "out", **settings)
    assert not (tmp_path / "out").exists()


def test_a_whole_float_rate_is_that_rate(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = _mixture_run(valset, out, sample_rate=8000.0, limit=np.int64(2))
    assert summary.num_computed == 2
    assert json.loads((out / "settings.json").read_text())["sample_rate"] == 8000
    again = _mixture_run(valset, out, sample_rate=8000, limit=2)  # the same settings resume
    assert again.num_resumed == 2 and again.num_computed == 0


def test_a_single_spec_is_one_system_not_its_letters(valset: ValSet, tmp_path: Path) -> None:
    one = _mixture_run(valset, tmp_path / "one", systems="mixture", limit=1)
    listed = _mixture_run(valset, tmp_path / "listed", systems=["mixture"], limit=1)
    assert list(one.scores) == list(listed.scores) == ["mixture"]
    assert one.scores == listed.scores
    system = Counting("counted")
    assert list(_mixture_run(valset, tmp_path / "sys", systems=system, limit=1).scores) == [
        "counted"
    ]
    assert system.calls == [valset.rows[0][3]]


def test_a_custom_systems_settings_may_hold_paths(valset: ValSet, tmp_path: Path) -> None:
    class WithPath(MixtureSystem):
        settings: ClassVar[dict[str, object]] = {"weights": Path("/models/x.ckpt")}

    _mixture_run(valset, tmp_path / "out", systems=[WithPath("custom")], limit=1)
    stored = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert stored["systems"]["custom"] == {"weights": "/models/x.ckpt"}
    assert _mixture_run(valset, tmp_path / "out", systems=[WithPath("custom")]).num_resumed == 1


def test_a_folder_another_run_is_writing_into_is_refused(valset: ValSet, tmp_path: Path) -> None:
    from querysep.errors import OutputError
    from querysep.fileio import locked_folder

    out = tmp_path / "out"
    _mixture_run(valset, out, limit=1)
    before = (out / "per_clip.csv").read_bytes()
    system = Counting()
    with locked_folder(out, "evaluate"), pytest.raises(OutputError, match="in use by another"):
        _mixture_run(valset, out, systems=[system], limit=2)
    assert system.calls == [] and (out / "per_clip.csv").read_bytes() == before
    _mixture_run(valset, out, systems=[system], limit=2)  # free again: it goes on
    assert len(system.calls) == 2
