"""The package's layers and the one direction imports may flow between them.

Each subpackage may import from the layers listed below it and never from one above, so that the tree reads as
the pipeline: ``core`` holds the values every part shares; ``sas`` and ``entra`` verify credentials and know
nothing of each other; ``decision`` runs a request through them; ``config`` produces ``core``'s settings and
swaps compiled runtimes; ``adapters`` translate each gateway's wire format; ``http`` serves it; ``cli`` is the
command line. Imports inside ``if TYPE_CHECKING:`` blocks are annotations, not dependencies, and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gateway_authz"

# Highest first. A layer may import any layer that comes after it in this list (and itself).
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"cli"}),
    frozenset({"http"}),
    frozenset({"adapters"}),
    frozenset({"config"}),
    frozenset({"decision"}),
    frozenset({"sas", "entra"}),  # siblings: neither imports the other
    frozenset({"core", "gateways"}),  # gateways: the shipped gateway configs as package data; imports nothing
)


def _layer_of(subpackage: str) -> int:
    for index, layer in enumerate(LAYERS):
        if subpackage in layer:
            return index
    raise AssertionError(f"gateway_authz/{subpackage} is in no layer: add it to LAYERS in {__file__}")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``path`` that names a gateway_authz module, lazy ones included."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                if target.startswith("gateway_authz"):
                    names = [target + "." + alias.name for alias in child.names] if not child.module else [target]
                    found.extend((child.lineno, name) for name in names)
            elif isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names if a.name.startswith("gateway_authz"))
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


def test_every_module_lives_in_a_layer() -> None:
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top_level == ["__init__.py", "__main__.py"], "modules belong in a subpackage that names their layer"
    for path in SOURCES:
        _layer_of(path.relative_to(PACKAGE).parts[0])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_down_the_layers(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0]
    own_layer = _layer_of(own)
    wrong = []
    for line, target in _imports(path):
        other = _subpackage(target)
        if other is None or other == own:
            continue
        other_layer = _layer_of(other)
        if other_layer < own_layer or (other_layer == own_layer and other != own):
            wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {target} ({own} may not depend on {other})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    """The graph walk itself: an upward import, a relative one and a lazy one inside a function are all found."""
    source = tmp_path / "probe.py"
    source.write_text("from ..http.app import create_app\n\ndef f():\n    from gateway_authz.cli import main\n")
    relocated = PACKAGE / "core" / "probe_for_layout_test.py"
    try:
        relocated.write_text(source.read_text())
        targets = [t for _, t in _imports(relocated)]
    finally:
        relocated.unlink()
    assert targets == ["gateway_authz.http.app", "gateway_authz.cli"]
