"""The import arrows point one way: edges call the rules, the rules call the store.

`handlers/` (the edges) imports nothing from `store/`; `bot/` never imports an edge, except
the composition root `bot/runtime/`, which wires the edges to the application.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (also inside functions)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.append("." * node.level + (node.module or ""))
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_packages_are_where_the_checks_look() -> None:
    assert len(_modules("handlers")) >= 7
    assert (ROOT / "bot" / "runtime" / "app.py").exists()


@pytest.mark.parametrize("path", _modules("handlers"), ids=lambda p: p.name)
def test_an_edge_imports_nothing_from_the_store(path: Path) -> None:
    found = [n for n in _imports(path) if _under(n, "store") or n.startswith(".")]
    assert found == [], f"{path.relative_to(ROOT)} imports {found}"


@pytest.mark.parametrize(
    "path",
    [p for p in _modules("bot") if "runtime" not in p.relative_to(ROOT).parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_rules_never_import_an_edge(path: Path) -> None:
    found = [n for n in _imports(path) if _under(n, "handlers")]
    assert found == [], f"{path.relative_to(ROOT)} imports {found}"


def test_the_check_sees_a_store_import_in_any_form(tmp_path: Path) -> None:
    sample = tmp_path / "edge.py"
    sample.write_text(
        "import store.tasks\n"
        "from store import outbox\n"
        "def f():\n"
        "    from store.database import UNAVAILABLE\n"
        "import storefront\n"
    )
    found = [n for n in _imports(sample) if _under(n, "store")]
    assert "store.tasks" in found and "store" in found and "store.database" in found
    assert "storefront" not in found
