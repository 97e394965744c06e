"""scripts/paired_difference.py: the model cards' paired differences."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("paired", ROOT / "scripts/paired_difference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(folder: Path, rows: list[dict[str, object]]) -> None:
    folder.mkdir()
    with (folder / "per_clip.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(
            fh, ["source", "noise", "snr", "caption", "system", "sdr", "sdri", "si_sdr"]
        )
        writer.writeheader()
        writer.writerows(rows)


def test_pairs_mixtures_by_key_and_reports_mean_se_and_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = []
    for i, (a, b) in enumerate([(1.0, 2.0), (3.0, 3.5), (0.0, -1.0)]):
        for system, value in (("A", a), ("B", b)):
            rows.append(
                dict(
                    source=f"s{i}",
                    noise="n",
                    snr=0,
                    caption="dog",
                    system=system,
                    sdr=value,
                    sdri=value,
                    si_sdr=2 * value,
                )
            )
    # scored by one system only: not paired
    rows.append(
        dict(source="s9", noise="n", snr=0, caption="dog", system="B", sdr=99, sdri=99, si_sdr=99)
    )
    _write(tmp_path / "eval", rows)
    paired = _script()
    paired.main([str(tmp_path / "eval"), "--base", "A", "--system", "B"])
    out = capsys.readouterr().out
    # differences 1, 0.5, -1: mean 1/6, sd sqrt(1.0833...) = 1.0408, s.e. 0.601
    assert "sdri    +0.167 (s.e. 0.601), higher on 67% of 3" in out
    assert "si_sdr  +0.333 (s.e. 1.202), higher on 67% of 3" in out
    # a list holding one mixture twice pairs both occurrences (first with first); a torn
    # last row, as a killed run leaves it, is left out
    twice = [dict(r, sdri=v) for r, v in zip(rows[:2], (0.0, 4.0), strict=True)]
    _write(tmp_path / "dup", [*rows[:6], *twice])
    with (tmp_path / "dup" / "per_clip.csv").open("a") as fh:
        fh.write("s1,n,0,dog,A,3.0,3.0,6")  # no newline: cut while written
    paired.main([str(tmp_path / "dup"), "--base", "A", "--system", "B"])
    out = capsys.readouterr().out
    # sdri differences 1, 0.5, -1 and 4: mean 1.125 over 4 pairs
    assert "sdri    +1.125 (s.e. 1.048), higher on 75% of 4" in out
    assert "sdr     +0.375 (s.e. 0.473), higher on 75% of 4" in out
    with pytest.raises(SystemExit, match=r"no system 'C' \(systems: A, B\)"):
        paired.main([str(tmp_path / "eval"), "--base", "A", "--system", "C"])
    with pytest.raises(SystemExit, match=r"cannot read .*none/per_clip.csv"):
        paired.main([str(tmp_path / "none"), "--base", "A", "--system", "B"])
