"""The layering of ../shared/DESIGN.md: core/ is pure, protocol/ does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "riskprop"
FORBIDDEN = {
    "core": {
        "asyncio",
        "aiohttp",
        "click",
        "yaml",
        "logging",
        "riskprop.protocol",
        "riskprop.node",
        "riskprop.cli",
    },
    "protocol": {"asyncio", "aiohttp", "click", "yaml", "socket", "riskprop.node", "riskprop.cli"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).glob("*.py"))
    assert files, f"no modules found under riskprop/{layer}"
    for path in files:
        for name in imported_modules(path):
            for banned in FORBIDDEN[layer]:
                assert name != banned and not name.startswith(banned + "."), (
                    f"{path.relative_to(PACKAGE.parent)} imports {name} ({layer}/ must not)"
                )
