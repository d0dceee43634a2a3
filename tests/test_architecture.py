"""The layout rules the README's architecture section states, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
ENGINE = ROOT / "engine"


def _modules(top: Path = APP) -> list[tuple[str, ast.Module]]:
    """(path relative to its import root, tree): ``app/...`` or ``cors_control/...``."""
    base = top.parent if top == APP else top
    return [(str(path.relative_to(base)), ast.parse(path.read_text()))
            for path in sorted((top if top == APP else top / "cors_control").rglob("*.py"))]


def _imports(tree: ast.Module, package: str) -> list[tuple[str, list[str]]]:
    """(absolute module, names) for every ``import`` and ``from ... import`` in *tree*."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def _package(relative: str) -> str:
    parts = relative.removesuffix(".py").split("/")
    return ".".join(parts if parts[-1] == "__init__" else parts[:-1]).removesuffix(".__init__")


def test_the_engine_imports_nothing_from_the_admin_app():
    modules = _modules(ENGINE)
    assert any(path == "cors_control/decision.py" for path, _tree in modules)
    offending = [
        f"{path}: {module}"
        for path, tree in modules
        for module, _names in _imports(tree, _package(path))
        if module == "app" or module.startswith("app.")
    ]
    assert offending == []


def test_no_module_imports_a_private_name_of_another_module():
    offending = [
        f"{path}: from {module} import {name}"
        for path, tree in _modules() + _modules(ENGINE)
        for module, names in _imports(tree, _package(path))
        for name in names
        if name.startswith("_") and not name.startswith("__")
        and (module.startswith("app") or module.startswith("cors_control"))
    ]
    assert offending == []


def test_only_the_engines_database_subpackage_needs_the_database_extra():
    """``pip install cors-control`` without ``[database]`` has no SQLAlchemy or psycopg: every
    other module of the engine (the refusal recorder included) must import without them."""
    extra = ("sqlalchemy", "psycopg")
    offending = [
        f"{path}: {module}"
        for path, tree in _modules(ENGINE)
        if not path.startswith("cors_control/database/")
        for module, _names in _imports(tree, _package(path))
        if module.split(".")[0] in extra
    ]
    assert offending == []
