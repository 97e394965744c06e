"""The CLI's consoles print user strings literally: file names, queries and model names may
hold square brackets, which rich would otherwise read as console markup."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from querysep.cli._common import console, err_console

LITERAL = "wrote take [live].wav  (dog [/] [bold]barking[/bold] from C:\\rec\\)"


@pytest.mark.parametrize("target", [console, err_console], ids=["stdout", "stderr"])
def test_console_prints_brackets_as_they_are(target: Console) -> None:
    with target.capture() as captured:
        target.print(LITERAL, soft_wrap=True)
    assert captured.get() == LITERAL + "\n"


@pytest.mark.parametrize(
    ("command", "default"),
    [
        (["separate"], "[default: separated/]"),
        (["separate"], "[default: the bundled default]"),
        (["evaluate"], "[default: esc50-clap]"),
        (["ats"], "[default: esc50-clap]"),
    ],
)
def test_help_shows_the_defaults_its_texts_name(command: list[str], default: str) -> None:
    from typer.testing import CliRunner

    from querysep.cli import app

    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert default in " ".join(result.output.split())  # rich once read these as markup tags


@pytest.mark.parametrize(
    "command",
    [["models"], ["prepare", "--list"], ["--help"]],
    ids=["rich-table", "typer-echo", "click-help"],
)
def test_a_closed_stdout_ends_a_command_quietly_with_status_141(command: list[str]) -> None:
    """`querysep models | head -1` exited 1, the status of a bug's traceback (typer's and
    rich's own handling): now the documented EXIT_STDOUT_CLOSED, and still nothing on stderr."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command prints anything
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "querysep", *command],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")

    from querysep.cli._common import EXIT_STDOUT_CLOSED

    assert EXIT_STDOUT_CLOSED == 141


def test_a_broken_pipe_elsewhere_is_not_taken_for_a_closed_stdout(tmp_path: Path) -> None:
    """A BrokenPipeError from a socket or a child's pipe, with stdout open, is a bug's: it
    must not end the command quietly as if stdout's reader had gone (nor hide --debug's
    traceback)."""
    import subprocess
    import sys

    script = (
        "import sys, querysep.pretrained as m\n"
        "def boom(*a, **k):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "m.list_models = boom\n"
        "from querysep.cli import main\n"
        "sys.argv = ['querysep', '--debug', 'models']\n"
        "main()\n"
    )
    with (tmp_path / "out.txt").open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", script], stdout=out, stderr=subprocess.PIPE, text=True
        )
    assert proc.returncode == 1, proc.stderr
    assert "BrokenPipeError: [Errno 32] Broken pipe" in proc.stderr  # --debug's traceback


def test_results_on_a_stdout_that_cannot_encode_them_are_escaped(tmp_path: Path) -> None:
    """A query in another script, printed to a pipe on an ASCII locale, ended a finished
    command with a UnicodeEncodeError traceback (exit 1); it is now escaped, as on stderr."""
    import os
    import subprocess
    import sys

    from querysep.testing import synth

    synth.write_wav(tmp_path / "mix.wav", synth.scene(0.5, 16000, seed=1), 16000)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "querysep",
            "ats",
            "mix.wav",
            "-q",
            "狗叫 dog",
            "--clap",
            "test-tiny",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"\\u72d7\\u53eb dog" in proc.stdout
