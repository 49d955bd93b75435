"""The domain stays independent: outside `domain/adapters/`, it imports no infrastructure."""

from __future__ import annotations

import ast
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "domain"
FORBIDDEN = ("sqlalchemy", "strawberry", "starlette", "arq", "redis", "binance", "asyncpg", "uvicorn", "gql_api",
             "workers", "pydantic", "httpx", "domain.adapters")  # fmt: skip


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_domain_core_imports_no_infrastructure() -> None:
    offenders = {}
    for path in DOMAIN.glob("*.py"):
        bad = {n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}
