"""The layering of ../shared/DESIGN.md, read from the imports of every module (lazy ones
inside functions too): each layer imports only the layers below it.

    core       maths and data, pure: nothing of riskprop above it, no I/O frameworks
    compute    executors for core's batches: core and errors only, no event loop or network of
               its own (the Dask executor talks through Dask's client)
    files      the files a run reads and writes: core and errors only
    protocol   the sans-I/O protocol: no event loop, network, configuration or commands
    config     configuration files: no node, lab, local network or commands
    scoring    initial scores from raw transactions: core, files and errors (and config) only
    stream     streaming ingestion (broker adapters, period store): no node, service, lab,
               local network or commands, no event loop (the service runs it in a thread)
    node       a bank's node: no lab, local network or commands
    service    the node as a long-running service: no lab, local network or commands
    lab        the researcher's simulations and experiments: no local network or commands
    localnet   networks of node processes on one machine: no commands
    cli        the commands, on top of everything
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "riskprop"
ABOVE_CORE = (
    "compute",
    "files",
    "protocol",
    "config",
    "scoring",
    "stream",
    "node",
    "service",
    "lab",
    "localnet",
    "cli",
)

#: layer -> modules it must not import (a name or any module below it)
FORBIDDEN: dict[str, set[str]] = {
    "core": {
        *(f"riskprop.{layer}" for layer in ABOVE_CORE),
        "asyncio",
        "aiohttp",
        "click",
        "yaml",
        "logging",
    },
    "compute": {"asyncio", "aiohttp", "click", "yaml", "socket", "logging"},
    "files": {"asyncio", "aiohttp", "click", "yaml", "socket"},
    "protocol": {
        *(f"riskprop.{layer}" for layer in ("config", "node", "lab", "localnet", "cli")),
        "asyncio",
        "aiohttp",
        "click",
        "yaml",
        "socket",
    },
    "config": {
        f"riskprop.{layer}"
        for layer in ("scoring", "stream", "node", "service", "lab", "localnet", "cli")
    },
    "scoring": {
        *(
            f"riskprop.{layer}"
            for layer in ("protocol", "stream", "node", "service", "lab", "localnet", "cli")
        ),
        "asyncio",
        "aiohttp",
    },
    "stream": {
        *(
            f"riskprop.{layer}"
            for layer in ("protocol", "node", "service", "lab", "localnet", "cli")
        ),
        "asyncio",
        "aiohttp",
    },
    "node": {f"riskprop.{layer}" for layer in ("service", "lab", "localnet", "cli")},
    "service": {f"riskprop.{layer}" for layer in ("lab", "localnet", "cli")},
    "lab": {"riskprop.localnet", "riskprop.cli"},
    "localnet": {"riskprop.cli"},
}
#: layer -> the only parts of riskprop it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "compute": {"riskprop.core", "riskprop.errors"},
    "files": {"riskprop.core", "riskprop.errors"},
}


def modules_of(layer: str) -> list[Path]:
    """The layer's modules: its package's files, or its single module."""
    package = PACKAGE / layer
    if package.is_dir():
        return sorted(package.rglob("*.py"))
    return [PACKAGE / f"{layer}.py"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import of {node.module}"
            names.add(node.module)
            # ``from riskprop import cli`` imports riskprop.cli
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def outside(name: str, own: str, allowed: set[str]) -> bool:
    """Whether ``name`` is a part of riskprop other than ``own`` and those ``allowed``."""
    inside = within(name, "riskprop") and name != "riskprop" and not within(name, own)
    return inside and not any(within(name, a) for a in allowed)


def violations(layer: str) -> list[str]:
    found = []
    own = f"riskprop.{layer}"
    for path in modules_of(layer):
        where = path.relative_to(PACKAGE.parent)
        for name in sorted(imported_modules(path)):
            found += [f"{where} imports {name}" for b in FORBIDDEN[layer] if within(name, b)]
            allowed = ALLOWED.get(layer)
            if allowed is not None and outside(name, own, allowed):
                found.append(f"{where} imports {name} ({layer}/ may import only {allowed})")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    assert modules_of(layer), f"no modules found for riskprop/{layer}"
    assert violations(layer) == []


def test_the_checks_see_forbidden_imports(tmp_path: Path) -> None:
    """The control: a module that breaks the rules is caught, lazy import and all."""
    module = tmp_path / "bad.py"
    module.write_text(
        "from riskprop.core import paillier\n"
        "def later() -> None:\n"
        "    from riskprop import cli\n"
        "    import asyncio\n"
    )
    names = imported_modules(module)
    assert {"riskprop.core.paillier", "riskprop.cli", "asyncio"} <= names
    assert any(within(n, "riskprop.cli") for n in names)
    assert not any(within(n, "riskprop.cli") for n in ("riskprop.client", "riskprop.core"))
    assert outside("riskprop.node.http", "riskprop.files", {"riskprop.core", "riskprop.errors"})
    assert not outside("riskprop.errors", "riskprop.files", {"riskprop.core", "riskprop.errors"})
