"""Dependencies point inwards: cli and tui -> services -> store, io, reports -> core (DESIGN section 7)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# For each layer, the pooler packages its modules may import.
ALLOWED = {
    "pooler.core": {"pooler.core", "pooler.errors"},
    "pooler.store": {"pooler.core", "pooler.store", "pooler.errors"},
    "pooler.io": {"pooler.core", "pooler.io", "pooler.errors"},
    "pooler.reports": {"pooler.core", "pooler.reports", "pooler.errors"},
    "pooler.services": {"pooler.core", "pooler.store", "pooler.io", "pooler.reports",
                        "pooler.services", "pooler.errors"},
    # cli may import tui: `pooler tui` launches the app (lazily, inside the command).
    "pooler.cli": {"pooler", "pooler.core", "pooler.services", "pooler.cli", "pooler.errors",
                   "pooler.io", "tui"},
    "tui": {"pooler", "pooler.core", "pooler.services", "pooler.errors", "tui"},
}


def _modules():
    for path in sorted([*ROOT.joinpath("pooler").rglob("*.py"), *ROOT.joinpath("tui").rglob("*.py")]):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        yield name.removesuffix(".__init__"), path


def _layer(module: str) -> str | None:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _target_layer(imported: str) -> str | None:
    if imported in ("pooler", "tui"):
        return imported
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if imported == layer or imported.startswith(layer + "."):
            return layer
    if imported.startswith("pooler."):
        return imported  # a top-level module such as pooler.errors
    return None


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_module_imports_only_inner_layers(module, path):
    layer = _layer(module)
    if layer is None:
        return  # pooler/__init__.py and pooler/errors.py import nothing of pooler's layers
    bad = [i for i in _imports(path) if (t := _target_layer(i)) is not None and t not in ALLOWED[layer]]
    assert not bad, f"{module} ({layer}) imports {bad}"


def test_core_imports_no_storage_cli_or_ui_library():
    forbidden = ("sqlalchemy", "sqlmodel", "typer", "rich", "textual")
    for module, path in _modules():
        if _layer(module) == "pooler.core":
            bad = [i for i in _imports(path) if i.split(".")[0] in forbidden]
            assert not bad, f"{module} imports {bad}"
