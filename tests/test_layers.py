"""The package's layering: the rooms (clap, captions, app) import downwards only.

Read from the source (the AST, lazy imports inside functions included), not from what one
test run happens to import. A ``python -m`` shim (``if __name__ == "__main__":``) may run the
CLI; nothing else may reach upwards.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "querysep"

# What each part may not import (directly or in a function).
FORBIDDEN = {
    "clap": {"captions", "app", "cli", "evaluation"},
    "captions": {"clap", "app", "cli", "evaluation", "training"},
    "app": {"cli"},
    "models": {"clap", "captions", "app", "cli", "evaluation", "training", "api"},
    "data": {"clap", "captions", "app", "cli", "evaluation", "training", "models", "api"},
    "audio": {"clap", "captions", "app", "cli", "evaluation", "training", "models", "data"},
    "training": {"clap", "captions", "app", "cli", "evaluation", "api"},
}


def _is_main_guard(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def _imported_parts(path: Path) -> set[str]:
    """The top-level ``querysep`` parts ``path`` imports, outside ``__main__`` guards."""
    relative = path.relative_to(PACKAGE).parts
    package = list(relative[:-1])
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_main_guard(node):
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
                names = target[:1] or [alias.name for alias in node.names]
            elif node.module and node.module.split(".")[0] == "querysep":
                names = node.module.split(".")[1:2]
            else:
                names = []
            found.update(name.removesuffix(".py") for name in names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "querysep" and len(parts) > 1:
                    found.add(parts[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found - {relative[0].removesuffix(".py")}


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_no_part_imports_upwards_or_sideways(part: str) -> None:
    files = sorted((PACKAGE / part).rglob("*.py"))
    assert files, f"no sources under {PACKAGE / part}"
    bad = {
        str(path.relative_to(PACKAGE)): sorted(_imported_parts(path) & FORBIDDEN[part])
        for path in files
    }
    assert not {k: v for k, v in bad.items() if v}


def test_the_scan_sees_lazy_imports_and_skips_main_guards() -> None:
    """The checker itself: a function-level import counts, a ``__main__`` shim does not."""
    source = PACKAGE / "clap" / "train.py"
    assert "cli" not in _imported_parts(source)  # its shim runs `querysep clap train`
    assert "cli" in source.read_text(encoding="utf-8")
    assert "models" in _imported_parts(PACKAGE / "clap" / "laion.py")
    assert "captions" in _imported_parts(PACKAGE / "cli" / "clap_train.py")  # a lazy import
