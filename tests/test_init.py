"""The package itself: what ``import querysep`` gives, and what it costs."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import querysep


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_subpackages_are_attributes_on_first_use() -> None:
    # Each was an AttributeError until something else had imported it (the README uses
    # querysep.clap.load_clap and querysep.metrics.get_metrics after a bare import).
    code = (
        "import sys, querysep; "
        "print('querysep.clap' in sys.modules, 'querysep.metrics' in sys.modules); "
        "print(querysep.clap.load_clap.__name__, querysep.metrics.get_metrics.__name__, "
        "querysep.evaluation.__name__, querysep.models.upstream.__name__)"
    )
    assert _run(code) == [
        "False",
        "False",
        "load_clap",
        "get_metrics",
        "querysep.evaluation",
        "querysep.models.upstream",
    ]


def test_import_stays_light() -> None:
    code = (
        "import sys, querysep; "
        "print(sorted(m for m in sys.modules if m.startswith('querysep.') or m in "
        "('torch', 'gradio', 'transformers', 'typer')))"
    )
    assert _run(code) == ["[]"]


def test_dir_lists_the_api_and_every_subpackage() -> None:
    names = dir(querysep)
    for name in ("Separator", "separate", "load_model", "list_models", "__version__"):
        assert name in names  # the first four were missing
    public = {m.name for m in pkgutil.iter_modules(querysep.__path__) if m.name[0] != "_"}
    assert public == set(querysep._SUBMODULES)  # a new subpackage is reachable too
    assert public <= set(names)
    assert not {"importlib", "Any", "TYPE_CHECKING", "annotations", "_SUBMODULES"} & set(names)


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    assert not hasattr(querysep, "nope")
    assert not hasattr(querysep, "__main__")  # never run the CLI by looking
