"""The layout rules the README's architecture section states, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(APP.parent)), ast.parse(path.read_text()))
            for path in sorted(APP.rglob("*.py"))]


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


def test_the_engine_imports_nothing_from_the_rest_of_the_app():
    offending = [
        f"{path}: {module}"
        for path, tree in _modules() if path.startswith("app/cors/")
        for module, _names in _imports(tree, _package(path))
        if (module == "app" or module.startswith("app.")) and not module.startswith("app.cors")
    ]
    assert offending == []


def test_no_module_imports_a_private_name_of_another_module():
    offending = [
        f"{path}: from {module} import {name}"
        for path, tree in _modules()
        for module, names in _imports(tree, _package(path))
        for name in names
        if name.startswith("_") and not name.startswith("__") and module.startswith("app")
    ]
    assert offending == []
