"""Lint and type checks run with the tests: ruff on the project, mypy (strict) on what pyproject.toml's
[tool.mypy] names: domain/ with its adapters, and workers/."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    # No paths: the configured `files`, so that this test and a plain `mypy` check the same scope.
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_scope() -> None:
    """The type check covers the domain, its adapters and the workers (not only the domain core)."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        config = tomllib.load(f)["tool"]["mypy"]
    assert {"domain", "workers"} <= set(config["files"])
    assert not config.get("exclude"), "no part of domain/ or workers/ is left out by `exclude`"
