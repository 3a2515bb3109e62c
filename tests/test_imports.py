"""The import rules of the house, read from the source with ast (nothing is imported): no import
cycles in genrl_core and app, and genrl_core never imports app (the app is built on the core,
and the core runs without it: training, the CLI's core commands, the Python API)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("genrl_core", "app")


def _is_ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _imports(path: Path) -> set[str]:
    """Modules of our packages a file imports, at the top or inside functions (`from genrl_core import
    cli` names both genrl_core and genrl_core.cli)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_ours(node.module):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if _is_ours(a.name))
    return found


def _graph() -> dict[str, set[str]]:
    """module -> the modules of our packages it imports (names that are not modules dropped)."""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_there_are_no_import_cycles():
    graph = _graph()
    assert "genrl_core.cli" in graph["app.cli"]  # the scan sees imports across the packages
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(name):], name]))
        if name in done:
            return
        for dep in graph[name]:
            if not name.startswith(dep + "."):  # a package's own __init__ is not a cycle
                visit(dep, [*trail, name])
        done.add(name)

    for name in graph:
        visit(name, [])


def test_genrl_core_never_imports_the_app():
    upward = {name: sorted(d for d in deps if d.split(".")[0] == "app")
              for name, deps in _graph().items() if name.startswith("genrl_core")}
    assert not {name: deps for name, deps in upward.items() if deps}, upward
