"""The deployment files are checked by parsing (no Docker engine in CI): docker-compose.yml, the
Dockerfile, .env.example and the Prometheus example; .ci/run runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from domain.adapters.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# SPEC §8, plus what the operations need.
SPEC_VARIABLES = ("DATABASE_URL", "REDIS_URL", "EXCHANGE", "BINANCE_TESTNET", "MARKET_SOURCE", "REPLAY_FILE",
                  "FEE_RATE", "CRIPTOREN_SECRET_KEY", "CRIPTOREN_ENV", "LOG_FORMAT", "HOST", "PORT",
                  "ENGINE_RELOAD_SECONDS")  # fmt: skip


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_has_services_health_checks_and_volumes() -> None:
    c = compose()
    services = c["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    # Every long-running service has a health check; `migrate` is a one-shot job.
    long_running = {name: s for name, s in services.items() if s.get("restart") != "no"}
    assert set(long_running) >= {"postgres", "redis", "api", "worker"}
    assert all("healthcheck" in s and s["healthcheck"]["test"] for s in long_running.values())
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    # Named volumes, each declared.
    assert {"pgdata", "redisdata", "backups"} <= set(c["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith((".", "/")) or source in c["volumes"], volume
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "backups:/backups" in services["worker"]["volumes"]


def test_compose_runs_migrate_then_the_api_and_the_worker_from_env() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["criptoren", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["command"] == ["criptoren", "serve"]
    assert services["worker"]["command"] == ["criptoren", "worker"]
    for name in ("api", "worker"):
        s = services[name]
        assert s["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert s["depends_on"]["redis"]["condition"] == "service_healthy"
        assert s["env_file"] == [{"path": ".env", "required": False}]
        assert s["build"] == "." and s["restart"] == "unless-stopped"
        env = s["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert "CRIPTOREN_SECRET_KEY" in env
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["worker"]["environment"]["METRICS_PORT"] == "9100"
    assert "9100/metrics" in " ".join(services["worker"]["healthcheck"]["test"])


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2, stages
    assert all("slim" in image for image, _ in stages)
    final = text.split(re.findall(r"^FROM .*$", text, re.MULTILINE)[-1])[1]
    assert re.search(r"^COPY --from=\S+ ", final, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), users
    assert "postgresql-client" in final  # pg_dump / pg_restore for `criptoren backup` / `restore`
    assert 'CMD ["criptoren", "serve"]' in final
    assert not re.search(r"\b(gcc|g\+\+|build-essential|python3?-dev|libpq-dev)\b", final)  # no build tools


def test_dockerfile_installs_the_dependencies_before_it_copies_the_sources() -> None:
    """A change to the code must not reinstall the dependencies: nothing before the last `pip install`
    copies the sources (pyproject.toml alone decides that layer), and the final stage copies them."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    pip = [i for i, line in enumerate(instructions) if line.startswith("RUN") and "pip install" in line]
    assert pip, "the Dockerfile installs nothing with pip"
    sources = ("domain", "gql_api", "workers", "alembic", ".")
    for line in instructions[: pip[-1]]:
        if line.startswith(("COPY", "ADD")) and "--from=" not in line:
            copied = line.split()[1:-1]
            assert not set(sources) & {c.rstrip("/") for c in copied}, f"sources copied before pip install: {line}"
    assert "--no-deps" in instructions[pip[-1]]  # the project last, on top of the dependencies
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM"))
    final = [line for line in instructions[last_from:] if line.startswith("COPY") and "--from=" not in line]
    for package in ("domain", "gql_api", "workers", "alembic"):
        assert any(package in line.split()[1:-1] for line in final), f"{package} not copied into the final stage"
    assert not any("pip install" in line for line in instructions[last_from:])


def test_env_example_documents_every_setting() -> None:
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    settings = {name.upper() for name in Settings.model_fields}
    assert set(SPEC_VARIABLES) <= documented
    assert settings - {"SYNTHETIC_SEED", "MAX_PAGE_SIZE"} <= documented, settings - documented
    # The compose file's own variables are documented too.
    compose_vars = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert compose_vars <= documented, compose_vars - documented


def test_prometheus_example_scrapes_the_api_and_the_worker() -> None:
    config = yaml.safe_load((ROOT / "docs" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"api:8000", "worker:9100"}
    assert "./docs/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose()["services"]["prometheus"]["volumes"]


def test_readme_has_a_deploy_section() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    for needed in ("docker compose up", "cp .env.example .env", "criptoren backup", "criptoren restore",
                   "docs/prometheus.yml", "/readyz", "/metrics", "criptoren pause"):  # fmt: skip
        assert needed in deploy, needed


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^(python3 -m venv .*)$", readme, re.MULTILINE)
    test_command = next(c for c in commands if c.endswith("pytest"))
    assert test_command in ci.splitlines()
