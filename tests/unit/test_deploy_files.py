"""docker-compose.yml is checked by parsing (no Docker engine in CI); .ci/run runs the README's
test command."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_has_services_health_checks_and_volumes() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "api"} <= set(services)
    assert all("healthcheck" in s for s in services.values())
    assert {"pgdata", "redisdata"} <= set(compose["volumes"])
    assert services["postgres"]["image"].startswith("postgres:15")


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^(python3 -m venv .*)$", readme, re.MULTILINE)
    test_command = next(c for c in commands if c.endswith("pytest"))
    assert test_command in ci.splitlines()
