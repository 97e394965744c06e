"""``querysep ats``: files x queries, pair lists, and every bad input as one line, exit 2."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from querysep.clap import load_clap
from querysep.clap.files import embed_file
from querysep.cli import app

CLAP = ["--clap", "test-tiny", "--no-progress"]


def _write(path: Path, seed: int, seconds: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * rng.standard_normal(int(seconds * 16000)), 16000, "FLOAT")
    return path


def _run(args: list[str]):
    return CliRunner().invoke(app, args)


def _pairs(path: Path, rows: list[tuple[str, ...]], header=("audio", "caption", "note")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_files_times_queries_table_and_long_csv(tmp_path: Path) -> None:
    a, b = _write(tmp_path / "a.wav", 1), _write(tmp_path / "b.wav", 2)
    out = tmp_path / "scores.csv"
    result = _run(["ats", str(a), str(b), "-q", "a dog", "-q", "rain", "-o", str(out), *CLAP])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [(Path(r["audio"]).name, r["caption"]) for r in rows] == [
        ("a.wav", "a dog"),
        ("a.wav", "rain"),
        ("b.wav", "a dog"),
        ("b.wav", "rain"),
    ]
    model = load_clap("test-tiny")
    expected = float(embed_file(model, b) @ model.embed_text(["rain"])[0])
    assert float(rows[3]["ats"]) == pytest.approx(expected, abs=1e-5)
    assert f"{expected:.3f}" in result.output


def test_pair_list_keeps_rows_and_columns_and_resolves_relative_paths(tmp_path: Path) -> None:
    _write(tmp_path / "clips" / "a.wav", 1)
    _write(tmp_path / "clips" / "b.wav", 2)
    pairs = _pairs(
        tmp_path / "pairs.csv",
        [
            ("clips/b.wav", "rain", "x"),
            ("clips/a.wav", "a dog", "y"),
            ("clips/b.wav", "a dog", "z"),
        ],
    )
    out = tmp_path / "out.csv"
    result = _run(["ats", "--list", str(pairs), "-o", str(out), *CLAP])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [(r["audio"], r["caption"], r["note"]) for r in rows] == [
        ("clips/b.wav", "rain", "x"),
        ("clips/a.wav", "a dog", "y"),
        ("clips/b.wav", "a dog", "z"),
    ]
    model = load_clap("test-tiny")
    for row in rows:
        expected = (
            embed_file(model, tmp_path / row["audio"]) @ model.embed_text([row["caption"]])[0]
        )
        assert float(row["ats"]) == pytest.approx(float(expected), abs=1e-5)


def test_skip_bad_scores_the_rest_and_leaves_ats_empty(tmp_path: Path) -> None:
    _write(tmp_path / "a.wav", 1)
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    pairs = _pairs(
        tmp_path / "p.csv",
        [
            ("a.wav", "a dog", ""),
            ("gone.wav", "a dog", ""),
            ("a.wav", "  ", ""),
            ("broken.wav", "rain", ""),
        ],
    )
    out = tmp_path / "out.csv"
    result = _run(["ats", "--list", str(pairs), "-o", str(out), "--skip-bad", *CLAP])
    assert result.exit_code == 0, result.output
    assert [r["ats"] != "" for r in csv.DictReader(out.open())] == [True, False, False, False]
    assert "line 3" in result.output and "line 4" in result.output


def test_a_file_found_bad_while_embedding_is_reported_by_line(tmp_path: Path) -> None:
    """Silence is only seen once the audio is read: still a bad row, with its line number."""
    _write(tmp_path / "a.wav", 1)
    sf.write(tmp_path / "silent.wav", np.zeros(16000), 16000)
    rows = [("a.wav", "a dog", ""), ("silent.wav", "rain", ""), ("a.wav", "rain", "")]
    pairs = _pairs(tmp_path / "p.csv", rows)
    out = tmp_path / "out.csv"
    result = _run(["ats", "--list", str(pairs), "-o", str(out), *CLAP])
    assert result.exit_code == 2 and not out.exists(), result.output
    assert result.output.strip() == (
        f"querysep: error: {pairs}: 1 bad row(s): line 3: {tmp_path / 'silent.wav'}: silent (no "
        "sample above -100 dBFS): it has no ATS; fix them or pass --skip-bad"
    )
    result = _run(["ats", "--list", str(pairs), "-o", str(out), "--skip-bad", *CLAP])
    assert result.exit_code == 0, result.output
    assert [r["ats"] != "" for r in csv.DictReader(out.open())] == [True, False, True]
    assert "line 3" in result.output
    assert "scored 2 of 3 pairs (1 file) with" in result.output  # the silent file not counted
    # a list whose every file fails once read scores nothing: an error, as when found first
    only = _pairs(tmp_path / "only.csv", [("silent.wav", "rain", "")])
    result = _run(["ats", "--list", str(only), "-o", str(tmp_path / "o2.csv"), "--skip-bad", *CLAP])
    assert result.exit_code == 2 and not (tmp_path / "o2.csv").exists(), result.output
    assert result.output.strip().endswith("it has no ATS; no row can be scored")


def test_written_csvs_read_back_as_pair_lists_from_another_folder(tmp_path: Path) -> None:
    """Both outputs name audio relative to their own folder, as a pair list is read."""
    _write(tmp_path / "sub" / "a.wav", 1)
    first = tmp_path / "results" / "files.csv"
    result = _run(["ats", str(tmp_path / "sub" / "a.wav"), "-q", "rain", "-o", str(first), *CLAP])
    assert result.exit_code == 0, result.output
    assert next(csv.DictReader(first.open()))["audio"] == "../sub/a.wav"
    pairs = _pairs(tmp_path / "sub" / "p.csv", [("a.wav", "rain", "n")])
    second = tmp_path / "out" / "listed.csv"
    assert _run(["ats", "--list", str(pairs), "-o", str(second), *CLAP]).exit_code == 0
    assert next(csv.DictReader(second.open()))["audio"] == "../sub/a.wav"
    # through symlinked folders: "link/.." is where the link points from, not where it is
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "deep" / "er")
    third = tmp_path / "link" / "listed.csv"
    assert _run(["ats", "--list", str(pairs), "-o", str(third), *CLAP]).exit_code == 0
    (tmp_path / "sub" / "s").symlink_to(tmp_path / "deep" / "er")
    _write(tmp_path / "deep" / "b.wav", 2)
    hops = _pairs(tmp_path / "sub" / "h.csv", [("s/../b.wav", "rain", "")])  # deep/b.wav
    fourth = tmp_path / "out" / "hops.csv"
    assert _run(["ats", "--list", str(hops), "-o", str(fourth), *CLAP]).exit_code == 0
    for written in (first, second, third, fourth):
        again = tmp_path / "again.csv"
        result = _run(["ats", "--list", str(written), "-o", str(again), *CLAP])
        assert result.exit_code == 0, result.output
        rows = [next(csv.DictReader(f.open())) for f in (written, again)]
        assert float(rows[1]["ats"]) == pytest.approx(float(rows[0]["ats"]), abs=1e-6)


def test_the_csv_is_written_even_when_stdout_is_closed(tmp_path: Path) -> None:
    """A table printed into a closed pipe (`| head -1`) ended the command before the CSV."""
    import subprocess
    import sys

    audio = _write(tmp_path / "a.wav", 1)
    out = tmp_path / "s.csv"
    args = ["-m", "querysep", "ats", str(audio), "-q", "rain", "-o", str(out), *CLAP]
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE)
    proc.stdout.close()  # long before the command prints anything
    proc.wait(timeout=120)
    assert out.is_file() and len(list(csv.DictReader(out.open()))) == 1


def _bad_cases(tmp: Path):
    good = _write(tmp / "a.wav", 1)
    empty = tmp / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    silent = tmp / "silent.wav"
    sf.write(silent, np.zeros(8000), 16000)
    return {
        "missing-file-row": (
            ["--list", str(_pairs(tmp / "l1.csv", [("a.wav", "x", ""), ("nope.wav", "y", "")]))],
            "line 3",
        ),
        "empty-caption-row": (
            ["--list", str(_pairs(tmp / "l2.csv", [("a.wav", " ", "")]))],
            "line 2",
        ),
        "no-caption-column": (
            ["--list", str(_pairs(tmp / "l3.csv", [("a.wav",)], header=("audio",)))],
            "caption column",
        ),
        "header-only-list": (["--list", str(_pairs(tmp / "l4.csv", []))], "no rows"),
        "missing-list": (["--list", str(tmp / "none.csv")], "none.csv"),
        "empty-audio-file-row": (
            ["--list", str(_pairs(tmp / "l5.csv", [(str(empty), "x", "")]))],
            "no audio",
        ),
        "too-many-fields": (
            ["--list", str(_pairs(tmp / "l6.csv", [("a.wav", "x", "", "extra")]))],
            "fields",
        ),
        "list-and-files": (
            ["--list", str(_pairs(tmp / "l7.csv", [("a.wav", "x", "")])), str(good), "-q", "x"],
            "not both",
        ),
        "silent-audio-file-row": (
            ["--list", str(_pairs(tmp / "l9.csv", [("a.wav", "x", ""), (str(silent), "y", "")]))],
            "silent.wav: silent (no sample above -100 dBFS): it has no ATS",
        ),
        "unknown-clap": (
            ["--list", str(_pairs(tmp / "l8.csv", [("a.wav", "x", "")])), "--clap", "nope"],
            "unknown audio-text model",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing-file-row",
        "empty-caption-row",
        "no-caption-column",
        "header-only-list",
        "missing-list",
        "empty-audio-file-row",
        "silent-audio-file-row",
        "too-many-fields",
        "list-and-files",
        "unknown-clap",
    ],
)
def test_bad_pair_lists_fail_with_one_line_and_write_nothing(tmp_path: Path, case: str) -> None:
    args, needle = _bad_cases(tmp_path)[case]
    out = tmp_path / "out.csv"
    clap = [] if "--clap" in args else ["--clap", "test-tiny"]
    result = _run(["ats", *args, "-o", str(out), *clap, "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("querysep: error:"), result.output
    assert needle in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["{a}"], "-q QUERY"),
        (["-q", "x"], "-q QUERY"),
        (["{a}", "-q", "  "], "empty query: describe a sound"),  # not "what to separate"
        (["{a}", "{missing}", "-q", "x"], "not found"),
        (["{a}", "{silent}", "-q", "x"], "silent.wav: silent"),
        (["{a}", "{short}", "-q", "x"], "short.wav: 799 samples at 8000 Hz (99.9 ms) is too short"),
        (["{a}", "-q", "x", "--skip-bad"], "only applies"),
        (["--list", "{a}"], "needs -o"),
    ],
)
def test_bad_file_mode_input_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    a = _write(tmp_path / "a.wav", 1)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(4000), 16000)
    short = tmp_path / "short.wav"
    sf.write(short, np.full(799, 0.5), 8000)
    argv = [
        x.format(a=a, missing=tmp_path / "missing.wav", silent=silent, short=short) for x in args
    ]
    result = _run(["ats", *argv, *CLAP])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output


def test_the_output_may_not_replace_the_list(tmp_path: Path) -> None:
    _write(tmp_path / "a.wav", 1)
    pairs = _pairs(tmp_path / "p.csv", [("a.wav", "x", "")])
    before = pairs.read_bytes()
    result = _run(["ats", "--list", str(pairs), "-o", str(pairs), *CLAP])
    assert result.exit_code == 2 and pairs.read_bytes() == before


def test_skip_bad_writes_bad_rows_back_as_they_were_read(tmp_path: Path) -> None:
    _write(tmp_path / "a.wav", 1)
    pairs = tmp_path / "p.csv"
    pairs.write_text(
        "audio,caption,ats\na.wav,a dog,\na.wav,a dog, barking,0.5\nb.wav\n"
        "~nosuchuser-qs/a.wav,rain,0.1\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.csv"
    result = _run(["ats", "--list", str(pairs), "-o", str(out), "--skip-bad", *CLAP])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert rows[0] == ["audio", "caption", "ats"] and rows[1][:2] == ["a.wav", "a dog"]
    assert -1.0 <= float(rows[1][2]) <= 1.0  # scored
    assert rows[2:] == [
        ["a.wav", "a dog", " barking", "0.5"],  # an unquoted comma: written back as read
        ["b.wav"],
        ["~nosuchuser-qs/a.wav", "rain", ""],  # an unknown ~user is a missing file, not a crash
    ]
    assert "line 3" in result.output and "line 5" in result.output


@pytest.mark.parametrize("part", ["audio", "text"])
def test_a_model_that_gives_nan_is_an_error_not_a_score(tmp_path: Path, part: str) -> None:
    """A CLAP whose weights are broken gives NaN embeddings: one line and exit 2, never a
    'nan' score in the table or a blank one in the list."""
    import torch
    from safetensors.torch import load_file, save_file

    from querysep.clap.small import SmallClap, SmallClapConfig

    torch.manual_seed(0)
    config = SmallClapConfig(
        window_seconds=0.5, n_fft=256, hop_length=128, n_mels=16, channels=[4, 8], dim=8
    )
    folder = SmallClap(config).save_pretrained(tmp_path / "broken")
    weights = load_file(str(folder / "model.safetensors"))
    key = next(k for k in sorted(weights) if k.startswith(f"{part}_head") and "weight" in k)
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, str(folder / "model.safetensors"))
    a = _write(tmp_path / "a.wav", 1)
    pairs = _pairs(tmp_path / "p.csv", [(str(a), "a dog", "x")])
    for args in (
        ["ats", str(a), "-q", "a dog"],
        ["ats", "--list", str(pairs), "-o", str(tmp_path / "out.csv"), "--skip-bad"],
    ):
        result = _run([*args, "--clap", str(folder), "--no-progress"])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"NaN or infinite {part} embeddings" in lines[0], lines
        assert "nan" not in result.stdout.lower()
    assert not (tmp_path / "out.csv").exists()


def test_a_non_seekable_codec_is_scored(tmp_path: Path) -> None:
    """GSM 6.10 in WAV (no seeking) was a traceback (soundfile's ValueError); it is scored
    as any file, the same as its samples saved as a plain WAV."""
    tone = (0.3 * np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000)).astype(np.float32)
    gsm = tmp_path / "gsm.wav"
    sf.write(gsm, tone, 8000, subtype="GSM610")
    plain = tmp_path / "plain.wav"
    sf.write(plain, sf.read(gsm, frames=sf.info(gsm).frames, dtype="float32")[0], 8000, "FLOAT")
    out = tmp_path / "scores.csv"
    result = _run(["ats", str(gsm), str(plain), "-q", "a tone", "-o", str(out), *CLAP])
    assert result.exit_code == 0, result.output
    scores = [float(row["ats"]) for row in csv.DictReader(out.open())]
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)
