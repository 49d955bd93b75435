"""The layers keep apart (STYLE "Layout"): every forbidden import arrow fails this test.

- The core (`domain/` outside `domain/adapters/`) imports no infrastructure, no adapter, no API and
  no worker code.
- The adapters serve the core: they never import the API or the workers.
- The API (`gql_api/`) and the workers (`workers/`) never import each other.
- Entry points (`gql_api/`, `workers/`) reach the adapters only through the composition root
  (`domain.adapters.bootstrap`) and the settings (`domain.adapters.config`).

Imports are read from the source (every `import`, module level or inside a function).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRASTRUCTURE = ("sqlalchemy", "strawberry", "starlette", "arq", "redis", "binance", "asyncpg", "uvicorn",
                  "pydantic", "pydantic_settings", "httpx", "aiohttp", "prometheus_client", "cryptography", "jwt",
                  "numpy", "matplotlib")  # fmt: skip
# numpy is the backtest pre-scan's (domain/backtest.py): allowed there only.
CORE_EXCEPTIONS = {"domain/backtest.py": {"numpy", "numpy.typing"}}
COMPOSITION_ROOT = ("domain.adapters.bootstrap", "domain.adapters.config")


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # `from domain.adapters import orm` reaches domain.adapters.orm
            yield from (f"{node.module}.{a.name}" for a in node.names if node.module == "domain.adapters")


def _offenders(files: list[Path], bad: Callable[[Path, str], bool]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in files:
        names = sorted({n for n in _imports(path) if bad(path, n)})
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def _py(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


CORE = [p for p in _py("domain") if "adapters" not in p.relative_to(ROOT).parts]
ADAPTERS = _py("domain/adapters")
API = _py("gql_api")
WORKERS = _py("workers")


def test_the_files_are_found() -> None:
    assert len(CORE) > 15 and len(ADAPTERS) > 20 and len(API) > 15 and len(WORKERS) > 4
    assert any(p.parent.name == "services" for p in CORE)


def test_core_imports_no_infrastructure_adapter_api_or_worker() -> None:
    def bad(path: Path, name: str) -> bool:
        if name in CORE_EXCEPTIONS.get(str(path.relative_to(ROOT)), set()):
            return False
        return _under(name, *INFRASTRUCTURE, "domain.adapters", "gql_api", "workers")

    assert _offenders(CORE, bad) == {}


def test_adapters_import_neither_the_api_nor_the_workers() -> None:
    assert _offenders(ADAPTERS, lambda _, n: _under(n, "gql_api", "workers")) == {}


def test_api_and_workers_never_import_each_other() -> None:
    assert _offenders(API, lambda _, n: _under(n, "workers")) == {}
    assert _offenders(WORKERS, lambda _, n: _under(n, "gql_api")) == {}


def test_entry_points_reach_adapters_only_through_the_composition_root() -> None:
    def bad(_: Path, name: str) -> bool:
        return _under(name, "domain.adapters") and name != "domain.adapters" and not _under(name, *COMPOSITION_ROOT)

    assert _offenders(API + WORKERS, bad) == {}


def test_no_module_is_over_900_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in CORE + ADAPTERS + API + WORKERS
        if (n := len(p.read_text().splitlines())) > 900
    }
    assert long == {}


def test_only_domain_services_commit() -> None:
    """STYLE §2: transactions begin and end in domain services; resolvers and tasks never commit."""
    committing = [
        str(p.relative_to(ROOT))
        for p in API + WORKERS
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "commit"
    ]
    assert committing == []
