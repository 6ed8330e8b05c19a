"""The core's layers, read from the source: no import cycle, and no layer imports one above it.

    streams  <  wire  <  driver  <  exporter | client | controller  <  cli | pytest_plugin

exporter, client and controller are peers: none imports another. Driver families may use
the driver layer, the wire layer, streams and the client library (for their client
classes), never the exporter, controller or CLI; the Ansible plugins only the client
library, the wire layer and driver families' client-side modules. A function-level
import counts like any other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

CORE = ROOT / "exporter" / "src"
RANK = {"streams": 0, "wire": 1, "driver": 2, "exporter": 3, "client": 3, "controller": 3, "cli": 4,
        "pytest_plugin": 4}  # the plugin, like the CLI, is a user of the client library


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every module `module` (the file at `path`) imports, resolved to absolute names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return found


def _project_modules(base: Path, top: str) -> dict[str, Path]:
    return {_module_name(p, base): p for p in (base / top).rglob("*.py") if "protocol" not in p.parts}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "jumpstarter_lab" and parts[1] in RANK else None


def _graph() -> dict[str, set[str]]:
    modules = _project_modules(CORE, "jumpstarter_lab")
    return {name: {m for m in _imports(path, name) if m in modules and m != name} for name, path in modules.items()}


def test_every_core_module_is_in_a_layer():
    strays = [name for name in _project_modules(CORE, "jumpstarter_lab") if name != "jumpstarter_lab" and not _layer(name)]
    assert not strays, f"modules outside the layers {sorted(RANK)}: {strays}"


def test_no_layer_imports_a_layer_above_it_or_a_peer():
    violations = []
    for module, imported in _graph().items():
        mine = _layer(module)
        for other in imported:
            theirs = _layer(other)
            if mine and theirs and theirs != mine and RANK[theirs] >= RANK[mine]:
                violations.append(f"{module} ({mine}) imports {other} ({theirs})")
    assert not violations, "\n".join(sorted(violations))


def test_no_import_cycle_in_the_core():
    graph = _graph()
    # A package's __init__ re-exporting its own modules is not a cycle of ideas; ignore edges into a parent.
    graph = {m: {o for o in deps if not m.startswith(o + ".")} for m, deps in graph.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == "open":
                cycles.append(" -> ".join(stack[stack.index(other):] + [other]))
            elif other not in state:
                visit(other, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def _outside_imports(paths: list[Path]) -> list[tuple[Path, str]]:
    found = []
    for path in paths:
        for module in _imports(path, "x.y"):
            if _layer(module):
                found.append((path, module))
    return found


def test_driver_families_use_no_exporter_controller_or_cli():
    paths = list((ROOT / "drivers").glob("*/src/**/*.py"))
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p, m in _outside_imports(paths)
           if _layer(m) in ("exporter", "controller", "cli")]
    assert not bad, "\n".join(bad)


def test_ansible_plugins_use_only_the_client_library_and_the_wire_layer():
    paths = list((ROOT / "plugins").rglob("*.py"))
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p, m in _outside_imports(paths)
           if _layer(m) not in ("client", "wire", "streams")]
    assert not bad, "\n".join(bad)


def test_the_cli_and_an_exporter_need_none_of_the_controller_extra():
    """Exporter hosts install jumpstarter-lab without [controller]: no SQLAlchemy, psycopg or cryptography."""
    probe = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sqlalchemy", "psycopg", "cryptography"):
            raise ModuleNotFoundError(f"No module named {name!r} (not installed here)", name=name)
sys.meta_path.insert(0, Refuse())
import jumpstarter_lab.cli, jumpstarter_lab.client, jumpstarter_lab.exporter.controller_link
from jumpstarter_lab.cli import main
sys.exit(main(["exporter", "check", "--config", sys.argv[1]]))
"""
    config = ROOT / "playbooks" / "exporters" / "sim.yaml"
    result = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and ": ok," in result.stdout, result.stdout + result.stderr
