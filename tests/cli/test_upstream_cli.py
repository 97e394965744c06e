"""``querysep separate/evaluate --model audiosep:CKPT``: outputs, options and bad input."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from querysep.cli import app
from querysep.testing import synth
from querysep.testing.clap import (
    laion_state_dict_from_clap,
    tiny_clap_model,
    tiny_roberta_tokenizer,
)
from querysep.testing.upstream import upstream_checkpoint_state

FIXTURES = Path(__file__).parent.parent / "fixtures"
LAION_KEYS = FIXTURES / "laion_clap" / "keys_htsat_base_roberta.tsv"


def _keys(tag: str) -> Path:
    return FIXTURES / "resunet30" / f"keys_{tag}.tsv"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("roberta")
    tiny_roberta_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def audiosep_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight AudioSep-format checkpoint with the full LAION key set."""
    path = tmp_path_factory.mktemp("ckpt") / "audiosep_base_4M_steps.ckpt"
    state = upstream_checkpoint_state(_keys("32k"), LAION_KEYS, text_weights=False)
    torch.save({"state_dict": state, "global_step": 4000000}, path)
    return path


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        pytest.fail(f"uncaught exception:\n{trace}")
    return result


def _write(path: Path, seconds: float, rate: int) -> Path:
    sf.write(path, synth.scene(seconds, rate, seed=1), rate)
    return path


def test_separate_keeps_rate_and_length(
    audiosep_ckpt: Path, tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 kHz in -> 32 kHz model -> 16 kHz out, exact length; also inputs far shorter than
    a segment (0.1 s, the shortest accepted: under two 32 kHz STFT windows) and inputs
    spanning segments."""
    monkeypatch.chdir(tmp_path)
    clips = {
        "long.wav": _write(tmp_path / "long.wav", 2.3, 16000),
        "short.wav": _write(tmp_path / "short.wav", 0.1, 16000),
        "odd.wav": _write(tmp_path / "odd.wav", 0.4123, 22050),
    }
    args = ["separate", *clips, "-q", "a dog barking", "-o", "out"]
    args += ["--model", f"audiosep:{audiosep_ckpt}", "--text-tokenizer", str(tokenizer)]
    args += ["--segment-seconds", "1", "--overlap-seconds", "0.25", "--no-ats"]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    for name, path in clips.items():
        info = sf.info(str(path))
        out = sf.info(str(tmp_path / "out" / f"{Path(name).stem}__a-dog-barking.wav"))
        assert (out.samplerate, out.frames) == (info.samplerate, info.frames)
    estimate, _ = sf.read(tmp_path / "out" / "long__a-dog-barking.wav")
    assert np.isfinite(estimate).all() and np.abs(estimate).max() > 0


def test_exact_path_on_request(audiosep_ckpt: Path, tokenizer: Path, tmp_path: Path) -> None:
    _write(tmp_path / "in.wav", 0.5, 16000)
    args = ["separate", str(tmp_path / "in.wav"), "-q", "rain", "-o", str(tmp_path / "o.wav")]
    args += ["-m", f"audiosep:{audiosep_ckpt}", "--text-tokenizer", str(tokenizer)]
    result = _invoke([*args, "--precision", "32", "--no-ats"])
    assert result.exit_code == 0, result.output
    assert sf.info(str(tmp_path / "o.wav")).frames == 8000


# ---------------------------------------------------------------------------------------
# bad input: one line on stderr, exit 2, no traceback


class Evil:
    """Unpickling this would create ``marker`` (it must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _save(name: str, obj: Callable[[Path], object]) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        path = root / name
        torch.save(obj(root), path)
        return path

    return make


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        (root / name).write_bytes(data)
        return root / name

    return make


def _missing_key(root: Path) -> dict:
    state = upstream_checkpoint_state(_keys("16k"))
    del state["ss_model.base.after_conv.weight"]
    return {"state_dict": state}


def _extra_key(root: Path) -> dict:
    state = upstream_checkpoint_state(_keys("16k"))
    state["waveform_mixer.gain"] = torch.zeros(1)
    return {"state_dict": state}


CASES = [
    ("corrupt", "dcase-baseline", _bytes("bad.ckpt", b"PK\x03\x04 truncated"), "cannot read"),
    ("empty", "dcase-baseline", _bytes("bad.ckpt", b""), "cannot read"),
    (
        "pickled-code",
        "audiosep",
        _save("bad.ckpt", lambda root: {"state_dict": Evil(root / "EXECUTED")}),
        "needs pickled code to load (io.open)",
    ),
    (
        "clap-as-separator",
        "audiosep",
        _save(
            "clap.pt", lambda root: {"state_dict": laion_state_dict_from_clap(tiny_clap_model())}
        ),
        "is a LAION-CLAP checkpoint (a query encoder), not a separator checkpoint",
    ),
    (
        "querysep-checkpoint",
        "audiosep",
        _save(
            "best.ckpt", lambda root: {"querysep": {}, "state_dict": {"model.net.x": torch.ones(1)}}
        ),
        "querysep training checkpoint",
    ),
    (
        "missing-key",
        "dcase-baseline",
        _save("bad.ckpt", _missing_key),
        "missing: base.after_conv.weight",
    ),
    ("extra-key", "dcase-baseline", _save("bad.ckpt", _extra_key), "unexpected keys"),
    (
        "wrong-rate",
        "dcase-baseline",
        _save("bad.ckpt", lambda root: {"state_dict": upstream_checkpoint_state(_keys("32k"))}),
        "load it as audiosep:",
    ),
    (
        "no-query-encoder",
        "dcase-baseline",
        _save("bad.ckpt", lambda root: {"state_dict": upstream_checkpoint_state(_keys("16k"))}),
        "holds no query encoder",
    ),
    ("not-a-dict", "audiosep", _save("bad.ckpt", lambda root: [1, 2]), "expected a dict"),
    ("folder", "audiosep", lambda root: (root / "dir").mkdir() or root / "dir", "is a folder"),
    ("no-file", "audiosep", lambda root: root / "nope.ckpt", "not found: "),
]


def _check(result, expect: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("querysep: error: ") and expect in lines[0], lines[0]
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("kind", "make", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_checkpoint(
    kind: str, make: Callable[[Path], Path], expect: str, tokenizer: Path, tmp_path: Path
) -> None:
    ckpt = make(tmp_path)
    _write(tmp_path / "in.wav", 0.3, 16000)
    args = ["separate", str(tmp_path / "in.wav"), "-q", "dog", "-o", str(tmp_path / "out")]
    result = _invoke([*args, "-m", f"{kind}:{ckpt}", "--text-tokenizer", str(tokenizer)])
    _check(result, expect)
    assert not (tmp_path / "EXECUTED").exists()
    assert not (tmp_path / "out").exists()


def test_bad_checkpoint_in_evaluate(tokenizer: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    (tmp_path / "audio").mkdir()
    (tmp_path / "list.csv").write_text("source,noise,snr,caption\na,b,0,a dog barking\n")
    args = ["evaluate", "--mixtures", str(tmp_path / "list.csv"), "--audio-dir"]
    args += [str(tmp_path / "audio"), "-m", f"audiosep:{tmp_path / 'bad.ckpt'}", "--no-ats"]
    args += ["--text-tokenizer", str(tokenizer), "-o", str(tmp_path / "eval")]
    _check(_invoke(args), "cannot read")


def test_missing_tokenizer(
    audiosep_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.delenv("QUERYSEP_TEXT_TOKENIZER", raising=False)
    _write(tmp_path / "in.wav", 0.3, 16000)
    args = ["separate", str(tmp_path / "in.wav"), "-q", "dog", "-o", str(tmp_path / "out")]
    result = _invoke([*args, "-m", f"audiosep:{audiosep_ckpt}"])
    _check(result, "needs the roberta-base tokenizer")
    assert "vocab.json, merges.txt" in result.stderr and "--text-tokenizer" in result.stderr


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (["--text-tokenizer", "EMPTY"], "no RoBERTa tokenizer in"),
        (["--clap-checkpoint", "nope.pt"], "is not a file"),
    ],
)
def test_bad_options(extra: list[str], expect: str, audiosep_ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / "EMPTY").mkdir()
    _write(tmp_path / "in.wav", 0.3, 16000)
    extra = [str(tmp_path / e) if e in ("EMPTY", "nope.pt") else e for e in extra]
    args = ["separate", str(tmp_path / "in.wav"), "-q", "dog", "-o", str(tmp_path / "out")]
    _check(_invoke([*args, "-m", f"audiosep:{audiosep_ckpt}", *extra]), expect)


def test_options_need_an_upstream_model(tokenizer: Path, tmp_path: Path) -> None:
    _write(tmp_path / "in.wav", 0.3, 16000)
    args = ["separate", str(tmp_path / "in.wav"), "-q", "dog", "-m", "test-tiny"]
    _check(_invoke([*args, "--text-tokenizer", str(tokenizer)]), "only applies to audiosep:")


def test_clap_checkpoint_path_may_start_with_a_tilde(
    audiosep_ckpt: Path, tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--clap-checkpoint ~/x.pt`` is the file in the home folder, as for every other path
    (the shell leaves a ``~`` alone in ``--opt=~/x``, and so do scripts that quote it)."""
    state = torch.load(audiosep_ckpt, weights_only=True)["state_dict"]
    prefix = "query_encoder.model."
    home = tmp_path / "home"
    home.mkdir()
    torch.save(
        {"state_dict": {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}},
        home / "clap.pt",
    )
    torch.save(
        {"state_dict": {k: v for k, v in state.items() if not k.startswith(prefix)}},
        tmp_path / "separator-only.ckpt",
    )
    monkeypatch.setenv("HOME", str(home))
    _write(tmp_path / "in.wav", 0.3, 16000)
    args = ["separate", str(tmp_path / "in.wav"), "-q", "dog", "-o", str(tmp_path / "out.wav")]
    args += ["-m", f"audiosep:{tmp_path / 'separator-only.ckpt'}", "--no-ats"]
    result = _invoke([*args, "--text-tokenizer", str(tokenizer), "--clap-checkpoint=~/clap.pt"])
    assert result.exit_code == 0, result.stderr
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(tmp_path / "in.wav")).frames
