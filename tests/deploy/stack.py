"""The compose project under test: started in stages, as podman 4.3 needs, and reached from outside."""

from __future__ import annotations

import sys
import time

import yaml

from tests.deploy.podman import ROOT, Compose, PodmanError

# Generous for a loaded 2-core machine; each wait polls and ends as soon as the service is ready.
HEALTHY_WITHIN = 180.0
MIGRATED_WITHIN = 300.0
# What the test sets, as an operator's .env would: market data from the offline random walk (no
# internet here) and the paper exchange, whatever a .env in the checkout says.
TEST_SETTINGS = {"MARKET_SOURCE": "synthetic", "EXCHANGE": "paper"}
# The image the compose file builds (`image:` of migrate, api and worker).
IMAGE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]["image"]


def log(message: str) -> None:
    sys.stderr.write(f"[deploy] {message}\n")
    sys.stderr.flush()


class Stack:
    """The compose project under test and what the tests need to reach it."""

    def __init__(self, compose: Compose, port: int) -> None:
        self.compose = compose
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"

    def up(self) -> None:
        """Start in stages, as podman 4.3 needs: it resolves no `depends_on` across a one-shot service
        and runs no health checks without systemd, so the test waits for each stage itself."""
        c = self.compose
        start = time.monotonic()
        self._up("postgres", "redis")
        for service in ("postgres", "redis"):
            c.wait_healthy(service, HEALTHY_WITHIN)
        log(f"postgres and redis healthy after {time.monotonic() - start:.1f}s")
        self._up("migrate")
        code = c.wait_exit("migrate", MIGRATED_WITHIN)
        if code != 0:
            raise PodmanError(f"migrate exited with {code}\n{c.logs('migrate')}")
        log(f"migrate exited 0 after {time.monotonic() - start:.1f}s")
        self._up("api", "worker")
        for service in ("api", "worker"):
            c.wait_healthy(service, HEALTHY_WITHIN)
        log(f"api and worker healthy after {time.monotonic() - start:.1f}s")

    def _up(self, *services: str) -> None:
        self.compose("up", "-d", "--no-deps", "--no-build", "--pull", "never", *services)

    def down(self, volumes: bool = False) -> None:
        self.compose.down(volumes=volumes)
