"""Sibling packages meet only through ``core``; ``repsys`` alone may import them all.

The allowed edges are the table of docs/ARCHITECTURE.md; any other import of a sibling
fails here with the file, line and module named.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = (
    "core",
    "collector",
    "rules",
    "plex",
    "runner",
    "web",
    "sim",
    "notify",
    "history",
    "repsys",
)

#: package -> dotted prefixes of other packages it may import (docs/ARCHITECTURE.md).
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": (),
    "collector": ("core",),
    "rules": ("core",),
    "plex": ("core",),
    "runner": ("core", "plex.client", "plex.errors", "plex.ratelimit"),
    "web": ("core", "runner.requests", "runner.errors"),
    "sim": ("core",),
    "notify": ("core", "rules.routing"),
    "history": ("core",),
    "repsys": PACKAGES,
}


def _imports(path: Path, package_parts: list[str]) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # "from plex import client" imports plex.client.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def violations(root: Path) -> list[str]:
    """Every import in ``root``'s packages that the ALLOWED table does not permit."""
    out: list[str] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            package_parts = parts if path.name == "__init__.py" else parts[:-1]
            for lineno, module in _imports(path, package_parts):
                top = module.split(".")[0]
                if top not in PACKAGES or top == package:
                    continue
                allowed = ALLOWED[package]
                if any(module == a or module.startswith(a + ".") for a in allowed):
                    continue
                # "from plex import client" also yields the bare "plex": judged by its names.
                if any(a.startswith(module + ".") for a in allowed) and module == top:
                    continue
                out.append(f"{rel}:{lineno}: {package} imports {module}")
    return out


def test_packages_import_only_what_the_architecture_allows() -> None:
    assert violations(REPO) == []


def test_the_check_catches_a_sibling_import(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "rules" / "engine.py").write_text(
        "import core.model\nfrom collector.mqtt import x\n"
    )
    (tmp_path / "web" / "app.py").write_text(
        "from runner.requests import submit\nfrom runner import mutex\nfrom .views import y\n"
    )
    (tmp_path / "runner" / "tb.py").write_text(
        "from plex import client\nfrom plex.sender import S\n"
    )
    assert violations(tmp_path) == [
        "rules/engine.py:2: rules imports collector.mqtt",
        "rules/engine.py:2: rules imports collector.mqtt.x",
        "runner/tb.py:2: runner imports plex.sender",
        "runner/tb.py:2: runner imports plex.sender.S",
        "web/app.py:2: web imports runner.mutex",
    ]
