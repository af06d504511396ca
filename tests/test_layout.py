"""The package layout: a small root, subpackages that say what they may import, no cycles.

Every subpackage's ``__init__`` docstring has a ``May import:`` line naming the
other parts of agentplex its modules may import (at any depth, lazily or not;
imports under ``if TYPE_CHECKING:`` are for annotations only and are not
counted). This test reads those lines, walks every module's imports with
:mod:`ast`, and fails on an import the docstring does not allow, on an import
that breaks the fixed rules below whatever a docstring says, and on a cycle of
module-level imports.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import agentplex

PACKAGE = Path(agentplex.__file__).parent
ROOT_MODULES = ("agentplex.exceptions", "agentplex.events", "agentplex.result")

# The rules of the layout (docs/architecture.md), checked whatever a docstring says.
NEVER = {
    "agentplex.model": ("sim", "planning", "batch", "cli", "report", "engine", "store", "files"),
    "agentplex.llm": ("sim", "planning", "batch", "cli", "report", "engine", "model", "store"),
    "agentplex.engine": ("sim", "planning", "batch", "cli", "report", "cluster"),
    "agentplex.store": ("engine", "sim", "planning", "batch", "cli", "report"),
    "agentplex.tools": (
        "engine",
        "model",
        "store",
        "files",
        "sim",
        "planning",
        "batch",
        "cli",
        "report",
    ),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Return (module-level imports, all imports) of agentplex modules in ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top: set[str] = set()
    every: set[str] = set()

    def target(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def visit(body: list[ast.stmt], module_level: bool) -> None:
        for stmt in body:
            found: list[str] = []
            if isinstance(stmt, ast.Import):
                found = [alias.name for alias in stmt.names]
            elif isinstance(stmt, ast.ImportFrom):
                base = target(stmt)
                for alias in stmt.names:
                    # ``from agentplex import events`` imports the module agentplex.events.
                    sub = f"{base}.{alias.name}"
                    found.append(sub if _is_module(sub) else base)
            elif isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
                continue
            for child_body in _bodies(stmt):
                visit(child_body, module_level and isinstance(stmt, ast.If | ast.Try))
            for imported in found:
                if imported == "agentplex" or imported.startswith("agentplex."):
                    every.add(imported)
                    if module_level:
                        top.add(imported)

    visit(ast.parse(path.read_text()).body, True)
    return top, every


def _bodies(stmt: ast.stmt) -> list[list[ast.stmt]]:
    bodies = []
    for field in ("body", "orelse", "finalbody"):
        value = getattr(stmt, field, None)
        if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
            bodies.append(value)
    bodies.extend(handler.body for handler in getattr(stmt, "handlers", []))
    return bodies


def _is_module(name: str) -> bool:
    relative = name.split(".")[1:]
    if not relative:
        return True
    path = PACKAGE.joinpath(*relative)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _owner(module: str) -> str:
    """The part of the package a module belongs to: its subpackage, or itself at the root."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
SUBPACKAGES = sorted(_module_name(path.parent) for path in PACKAGE.glob("*/__init__.py"))


def _allowed(package: str) -> set[str]:
    doc = ast.get_docstring(
        ast.parse((PACKAGE / package.split(".")[1] / "__init__.py").read_text())
    )
    assert doc, f"{package}/__init__.py has no docstring saying what it owns"
    match = re.search(r"^May import:(.*?)(?:\n\n|\Z)", doc, re.MULTILINE | re.DOTALL)
    assert match, f"{package}/__init__.py: the docstring has no 'May import:' paragraph"
    names = set(re.findall(r"agentplex(?:\.[a-z_]+)?", match.group(1)))
    return {name for name in names if name != "agentplex"}


def test_the_root_holds_at_most_twelve_modules() -> None:
    root = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(root) <= 12, root


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_every_subpackage_says_what_it_owns_and_may_import(package: str) -> None:
    doc = ast.get_docstring(
        ast.parse((PACKAGE / package.split(".")[1] / "__init__.py").read_text())
    )
    assert doc is not None
    assert "Owns:" in doc, f"{package}: the docstring should have an 'Owns:' paragraph"
    for name in _allowed(package):
        assert name in ROOT_MODULES or name in SUBPACKAGES, f"{package}: unknown {name!r}"


def test_imports_point_the_way_each_docstring_allows() -> None:
    wrong = []
    for module, path in MODULES.items():
        owner = _owner(module)
        if owner == "agentplex" or owner == "agentplex.__main__":
            continue  # the public face and the entry point may import anything
        allowed = set(ROOT_MODULES) if owner in ROOT_MODULES else _allowed(owner)
        for imported in sorted(_imports(path)[1]):
            target = _owner(imported)
            if target == owner:
                continue
            if target not in allowed:
                wrong.append(f"{module} imports {imported} ({owner} may not import {target})")
            banned = NEVER.get(owner, ())
            if target.rpartition(".")[2] in banned:
                wrong.append(f"{module} imports {imported}: {owner} never imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_allowed_imports_form_no_cycle() -> None:
    graph = {package: _allowed(package) - {package} for package in SUBPACKAGES}
    assert not _cycles(graph), _cycles(graph)


def test_no_cycle_of_module_level_imports() -> None:
    graph = {
        module: {m for m in _imports(path)[0] if m in MODULES} for module, path in MODULES.items()
    }
    assert not _cycles(graph), "\n".join(" -> ".join(cycle) for cycle in _cycles(graph))


def test_no_module_is_shadowed_by_a_name_of_its_package() -> None:
    modules = [m for m in MODULES if m != "agentplex.__main__"]
    for name in modules:
        importlib.import_module(name)
    for name in modules:
        if name == "agentplex":
            continue
        parent_name, _, child = name.rpartition(".")
        parent = importlib.import_module(parent_name)
        assert getattr(parent, child) is importlib.import_module(name), (
            f"{parent_name}.{child} is not the module {name}"
        )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan), or self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found
