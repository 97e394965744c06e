from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from querysep.cli import app
from querysep.data import read_manifest, read_mixture_list, write_manifest
from querysep.data.manifest import Clip
from querysep.data.mixing import row_files

runner = CliRunner()

ESC50_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def _esc50(root: Path, write_audio: Callable[..., Path], write_csv: Callable[..., Path]) -> None:
    rows = []
    for fold in (1, 4):
        for k, category in enumerate(["dog", "rain", "church_bells"]):
            name = f"{fold}-{k}-A-{k}.wav"
            rows.append([name, fold, k, category, "False", k, "A"])
            write_audio(root / "audio" / name, freq=300 + 100 * k)
    rows.append(["5-9-A-0.wav", 5, 0, "dog", "True", 9, "A"])
    write_csv(root / "esc50.csv", ESC50_HEADER, rows)


def test_prepare_esc50_then_make_mixtures(
    tmp_path: Path, write_audio: Callable[..., Path], write_csv: Callable[..., Path]
) -> None:
    root = tmp_path / "esc50"
    _esc50(root, write_audio, write_csv)
    manifest = tmp_path / "out" / "esc50.jsonl"
    result = runner.invoke(app, ["prepare", "esc50", str(root), "-o", str(manifest)])
    assert result.exit_code == 0, result.output
    assert "wrote 6 clips" in result.stdout and "fold1: 3, fold4: 3" in result.stdout
    assert "skipped 1 missing/unreadable files (first: 5-9-A-0.wav (missing))" in result.stderr
    clips = read_manifest(manifest)
    assert len(clips) == 6 and clips[2].captions == ["church bells"]

    only4 = tmp_path / "fold4.jsonl"
    result = runner.invoke(
        app, ["prepare", "esc50", str(root), "-o", str(only4), "--split", "fold4"]
    )
    assert result.exit_code == 0 and len(read_manifest(only4)) == 3

    datafile = tmp_path / "esc50.json"
    result = runner.invoke(app, ["prepare", "esc50", str(root), "-o", str(datafile)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(datafile.read_text())["data"]) == 6
    assert "left out" not in result.stdout

    out = tmp_path / "list.csv"
    args = ["mixtures", "make", str(manifest), "-n", "8", "--snr-min", "-3", "--snr-max", "3"]
    result = runner.invoke(app, [*args, "--split", "fold4", "--seed", "5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 8 mixtures" in result.stdout and str(root / "audio") in result.stdout
    assert out.read_text().startswith("source,noise,snr,caption\n")
    rows = read_mixture_list(out)
    by_id = {c.id: c for c in clips}
    assert len(rows) == 8
    for row in rows:
        assert str(row.source).startswith("4-") and str(row.noise).startswith("4-")
        assert by_id[str(row.source)].labels != by_id[str(row.noise)].labels
        assert -3 <= (row.snr or 0) <= 3
    again = tmp_path / "again.csv"
    runner.invoke(app, [*args, "--split", "fold4", "--seed", "5", "-o", str(again)])
    assert again.read_text() == out.read_text()
    # a split asked for that is not there (a typo) is named, not quietly dropped
    typo = ["--split", "fold4", "--split", "fold9"]
    result = runner.invoke(app, [*args, *typo, "-o", str(tmp_path / "typo.csv")])
    assert result.exit_code == 2, result.output
    assert "no clip of split fold9 in" in result.stderr and "(found: fold1, fold4)" in result.stderr
    result = runner.invoke(app, ["prepare", "esc50", str(root), "-o", str(only4), *typo])
    assert result.exit_code == 2, result.output
    assert "no clip of split fold9 for recipe esc50" in result.stderr
    assert "(splits found: fold1, fold4)" in result.stderr
    assert not (tmp_path / "typo.csv").exists() and len(read_manifest(only4)) == 3


def test_prepare_esc50_with_the_more_captions(
    tmp_path: Path, write_audio: Callable[..., Path], write_csv: Callable[..., Path]
) -> None:
    from querysep.data.recipes.esc50 import builtin_captions

    root = tmp_path / "esc50"
    _esc50(root, write_audio, write_csv)
    found = {}
    for option in ("builtin", "builtin+more"):
        out = tmp_path / f"{option}.jsonl"
        args = ["prepare", "esc50", str(root), "-o", str(out), "--captions", option]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        found[option] = {c.id: c.captions for c in read_manifest(out)}
    more = builtin_captions("more")
    for clip, captions in found["builtin+more"].items():
        category = {"dog": "dog", "rain": "rain", "church bells": "church_bells"}[captions[0]]
        assert captions == [*found["builtin"][clip], *more[category]]
    bad = tmp_path / "bad.jsonl"
    args = ["prepare", "esc50", str(root), "-o", str(bad), "--captions", "more"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "'builtin+more+extra', not 'more'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not bad.exists()


def test_mixtures_with_random_captions(
    tmp_path: Path, write_audio: Callable[..., Path], write_csv: Callable[..., Path]
) -> None:
    root = tmp_path / "esc50"
    _esc50(root, write_audio, write_csv)
    manifest = tmp_path / "esc50.jsonl"
    args = ["prepare", "esc50", str(root), "-o", str(manifest), "--captions", "builtin"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    known = {c.id: c.captions for c in read_manifest(manifest)}
    assert all(len(captions) > 3 for captions in known.values())  # label + natural captions

    def make(name: str, *options: str) -> list:
        out = tmp_path / name
        result = runner.invoke(
            app, ["mixtures", "make", str(manifest), "-n", "60", "-o", str(out), *options]
        )
        assert result.exit_code == 0, result.output
        return read_mixture_list(out)

    rows = make("a.csv", "--caption", "random", "--seed", "3")
    for row in rows:
        assert row.caption in known[str(row.source)]
    for source in known:  # drawn among all of them, not the first only
        used = {r.caption for r in rows if r.source == source}
        assert len(used) >= 3, (source, used)
    make("b.csv", "--caption", "random", "--seed", "3")  # same seed, same file
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()
    other_seed = make("c.csv", "--caption", "random", "--seed", "4")
    assert [r.caption for r in other_seed] != [r.caption for r in rows]
    first = make("d.csv", "--caption", "first", "--seed", "3")
    assert all(r.caption == known[str(r.source)][0] for r in first)


def test_prepare_list_and_user_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prepare", "--list"])
    assert result.exit_code == 0
    assert "esc50" in result.stdout and "dcase2024-val" in result.stdout

    result = runner.invoke(app, ["prepare", "nope", str(tmp_path), "-o", "x.jsonl"])
    assert result.exit_code == 2
    assert "unknown recipe 'nope'; available: audiocaps, clotho" in result.stderr

    result = runner.invoke(app, ["prepare", "esc50", str(tmp_path), "-o", "x.jsonl"])
    assert result.exit_code == 2
    assert result.stderr.startswith("querysep: error: esc50.csv not found")
    assert len(result.stderr.strip().splitlines()) == 1

    args = ["prepare", "esc50", str(tmp_path), "-o", "x.jsonl", "--captions-csv", "c.csv"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "does not apply" in result.stderr

    result = runner.invoke(app, ["prepare", "folder", str(tmp_path), "-o", "x.jsonl"])
    assert result.exit_code == 2 and "no clips found" in result.stderr


def test_mixtures_user_errors(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    write_manifest(
        [Clip(id=f"{k}", audio=f"/{k}.wav", captions=["dog"], labels=["dog"]) for k in range(3)],
        manifest,
    )
    out = str(tmp_path / "o.csv")
    result = runner.invoke(app, ["mixtures", "make", str(manifest), "-n", "2", "-o", out])
    assert result.exit_code == 2 and "no valid (source, noise) pair" in result.stderr
    args = ["mixtures", "make", str(manifest), "-n", "2", "-o", out, "--split", "fold9"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "no clip of split fold9" in result.stderr
    result = runner.invoke(
        app, ["mixtures", "make", str(tmp_path / "x.jsonl"), "-n", "2", "-o", out]
    )
    assert result.exit_code == 2 and "manifest not found" in result.stderr
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    result = runner.invoke(
        app, ["mixtures", "make", str(tmp_path / "bad.jsonl"), "-n", "2", "-o", out]
    )
    assert result.exit_code == 2 and "bad.jsonl:1: malformed" in result.stderr


def test_outputs_under_a_file_are_one_line_exit_2_and_write_nothing(
    tmp_path: Path, write_audio: Callable[..., Path], write_csv: Callable[..., Path]
) -> None:
    root = tmp_path / "esc50"
    _esc50(root, write_audio, write_csv)
    manifest = tmp_path / "m.jsonl"
    assert runner.invoke(app, ["prepare", "esc50", str(root), "-o", str(manifest)]).exit_code == 0
    blocker = tmp_path / "FILE"
    blocker.write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    calls = [
        ["prepare", "esc50", str(root), "-o", str(blocker / "m.jsonl")],
        ["prepare", "esc50", str(root), "-o", str(blocker / "sub" / "d.json")],
        ["mixtures", "make", str(manifest), "-n", "2", "-o", str(blocker / "x.csv")],
    ]
    for args in calls:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [
            f"querysep: error: cannot write {args[-1]}: {blocker} is a file, not a folder"
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == before and blocker.read_text() == "x"


def test_prepare_refuses_a_duplicated_metadata_row_and_writes_nothing(
    tmp_path: Path, write_audio: Callable[..., Path], write_csv: Callable[..., Path]
) -> None:
    """A repeated row in ESC-50's meta/esc50.csv would give a manifest read_manifest refuses."""
    root = tmp_path / "esc50"
    rows = [[f"1-{k}-A-{k}.wav", 1, k, "dog", "False", k, "A"] for k in range(3)]
    for row in rows:
        write_audio(root / "audio" / str(row[0]))
    write_csv(root / "meta" / "esc50.csv", ESC50_HEADER, [*rows, rows[1]])
    manifest = tmp_path / "m.jsonl"
    result = runner.invoke(app, ["prepare", "esc50", str(root), "-o", str(manifest)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [  # named where it is read, not as the output's fault
        f"querysep: error: {root / 'meta' / 'esc50.csv'}: 1-1-A-1.wav is listed twice"
    ]
    assert "Traceback" not in result.output
    assert not manifest.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["esc50"]


def test_prepare_refuses_to_write_over_the_datasets_own_json_and_writes_nothing(
    tmp_path: Path, write_audio: Callable[..., Path], write_csv: Callable[..., Path]
) -> None:
    """lass_validation.json and FSD50K's clip-info JSON end in .json like a datafile, but
    they are what the recipe reads: replacing them would delete the dataset's entries."""
    dcase = tmp_path / "dv"
    write_audio(dcase / "lass_validation" / "x1.wav")
    datafile = dcase / "lass_validation.json"
    original = json.dumps(
        {
            "data": [
                {"wav": "lass_validation/x1.wav", "caption": "dog"},
                {"wav": "lass_validation/x3.wav", "caption": "gone"},
            ]
        }
    )
    datafile.write_text(original)
    fsd = tmp_path / "fsd"
    write_csv(fsd / "FSD50K.ground_truth" / "dev.csv", ["fname", "labels"], [["1", "Bark"]])
    write_audio(fsd / "FSD50K.dev_audio" / "1.wav")
    info = fsd / "FSD50K.metadata" / "dev_clips_info_FSD50K.json"
    info.parent.mkdir()
    info.write_text('{"1": {"tags": ["dog"]}}')
    calls = [
        ("dcase2024-val", dcase, datafile, datafile),
        ("dcase2024-val", dcase, dcase / "lass_validation" / ".." / datafile.name, datafile),
        ("fsd50k", fsd, info, info),
    ]
    for name, root, output, read in calls:
        before = read.read_bytes()
        result = runner.invoke(app, ["prepare", name, str(root), "-o", str(output)])
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [
            f"querysep: error: cannot write {output}: it is the input {read}; choose another output"
        ]
        assert read.read_bytes() == before
    assert datafile.read_text() == original
    # a datafile of our own inside the dataset folder may still be replaced
    ours = dcase / "ours.json"
    for _ in range(2):
        result = runner.invoke(app, ["prepare", "dcase2024-val", str(dcase), "-o", str(ours)])
        assert result.exit_code == 0, result.output
    assert json.loads(ours.read_text())["data"][0]["caption"] == "dog"


def test_mixtures_name_clips_so_that_evaluate_finds_each_one(
    tmp_path: Path, write_audio: Callable[..., Path]
) -> None:
    """Clips in subfolders, and x.wav beside x.flac (ids x, x-2): the list names each by its
    path under the folder it prints, and evaluate scores exactly those files."""
    root = tmp_path / "ds"
    files = {
        "s1/dog": write_audio(root / "s1" / "dog.wav", freq=200),
        "s2/cat": write_audio(root / "s2" / "cat.wav", freq=400),
        "s2/x.flac": write_audio(root / "s2" / "x.flac", freq=600),
        "s2/x.wav": write_audio(root / "s2" / "x.wav", freq=800),
    }
    for name, text in (("s1/dog", "dog"), ("s2/cat", "cat"), ("s2/x", "x")):
        (root / f"{name}.txt").write_text(f"{text}\n")
    manifest = tmp_path / "ds.jsonl"
    assert runner.invoke(app, ["prepare", "folder", str(root), "-o", str(manifest)]).exit_code == 0
    assert [c.id for c in read_manifest(manifest)] == ["dog", "cat", "x", "x-2"]
    out = tmp_path / "mix.csv"
    made = runner.invoke(app, ["mixtures", "make", str(manifest), "-n", "8", "-o", str(out)])
    assert made.exit_code == 0, made.output
    rows = read_mixture_list(out)
    assert {row.source for row in rows} == set(files)
    for row in rows:
        source, noise = row_files(row, root)
        assert (source, noise) == (files[str(row.source)], files[str(row.noise)])
        assert row.caption == ("x" if "x." in source.name else source.stem)
    scores = tmp_path / "scores"
    args = ["evaluate", "--mixtures", str(out), "--audio-dir", str(root), "-m", "mixture"]
    result = runner.invoke(app, [*args, "--no-ats", "--no-progress", "-o", str(scores)])
    assert result.exit_code == 0, result.output
    assert "8 clips" in result.stdout
    assert f"evaluate it with --audio-dir {root.resolve()}" in made.stdout


def test_a_datafile_says_which_clips_it_leaves_out(
    tmp_path: Path, write_audio: Callable[..., Path]
) -> None:
    write_audio(tmp_path / "data" / "a.wav")
    write_audio(tmp_path / "data" / "b.wav")
    (tmp_path / "data" / "a.txt").write_text("a dog barks", encoding="utf-8")
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["prepare", "folder", str(tmp_path / "data"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 1 entries (1 clips)" in result.stdout  # was "(2 clips)", b dropped unsaid
    assert "1 clips without a caption or label left out" in result.stdout
    assert "train: 1" in result.stdout
    (tmp_path / "data" / "a.txt").unlink()
    again = tmp_path / "none.json"
    result = runner.invoke(app, ["prepare", "folder", str(tmp_path / "data"), "-o", str(again)])
    assert result.exit_code == 2 and "none of the 2 clips found has a caption" in result.stderr
    assert not again.exists()  # was {"data": []} and exit 0
