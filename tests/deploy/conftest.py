"""The container test's machinery: podman (configured for this machine), the local base images and
the compose project, brought up in stages and always taken down with its volumes.

Without podman (and debootstrap, runc, podman-compose) the tests are skipped, except under CI=true,
where they fail: `scripts/setup containers` installs them."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy import podman
from tests.deploy.podman import Compose, PodmanError

# Generous for a loaded 2-core machine; each wait polls and ends as soon as the service is ready.
HEALTHY_WITHIN = 180.0
MIGRATED_WITHIN = 300.0
# What the test sets, as an operator's .env would: market data from the offline random walk (no
# internet here) and the paper exchange, whatever a .env in the checkout says.
TEST_SETTINGS = {"MARKET_SOURCE": "synthetic", "EXCHANGE": "paper"}
# The image the compose file builds (`image:` of migrate, api and worker).
IMAGE = yaml.safe_load((podman.ROOT / "docker-compose.yml").read_text())["services"]["api"]["image"]


def log(message: str) -> None:
    sys.stderr.write(f"[deploy] {message}\n")
    sys.stderr.flush()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the container test (scripts/setup containers installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def podman_env() -> Iterator[dict[str, str]]:
    """The environment every podman command runs with: CONTAINERS_CONF pointing at a configuration
    made for this machine, and no compose variable inherited from the caller's shell."""
    if missing := podman.missing_tools():
        _unavailable(f"{', '.join(missing)} not found (as root: scripts/setup containers)")
    if shutil.which("podman-compose") is None and not (Path(sys.executable).parent / "podman-compose").exists():
        _unavailable("podman-compose not found (it is in the [dev] extra: pip install -e '.[dev]')")
    if os.geteuid() != 0:
        _unavailable("the container test runs podman as root (debootstrap and the bridge network need it)")
    if Path("/sys/class/net/cni-podman0").exists():
        pytest.fail("CNI's bridge cni-podman0 holds the default network's subnet, so netavark's gets no replies: "
                    "scripts/setup containers removes it when idle (ip link delete cni-podman0)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="criptoren-podman-") as tmp:
        compose_vars = set(re.findall(r"\$\{([A-Z_]+)", (podman.ROOT / "docker-compose.yml").read_text()))
        env = {k: v for k, v in os.environ.items() if k not in compose_vars and not k.startswith("COMPOSE_")}
        env["CONTAINERS_CONF"] = str(podman.containers_conf(Path(tmp)))
        yield env


@pytest.fixture(scope="session")
def base_images(podman_env: dict[str, str]) -> None:
    start = time.monotonic()
    podman.ensure_base_images(podman_env, log)
    log(f"base images ready in {time.monotonic() - start:.1f}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


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


@pytest.fixture(scope="module")
def stack(podman_env: dict[str, str], base_images: None) -> Iterator[Stack]:
    """The repository's compose file, with its image built from the repository's Dockerfile, up and
    healthy under a project name of its own; removed with its volumes afterwards, whatever happened."""
    project = f"criptoren-test-{secrets.token_hex(4)}"
    port = free_port()
    env = dict(
        podman_env,
        API_PORT=str(port),
        CRIPTOREN_SECRET_KEY=secrets.token_urlsafe(32),
        POSTGRES_PASSWORD=secrets.token_urlsafe(16),
    )
    with tempfile.TemporaryDirectory(prefix="criptoren-compose-") as tmp:
        override = Path(tmp) / "test-settings.yml"
        services = {name: {"environment": dict(TEST_SETTINGS)} for name in ("migrate", "api", "worker")}
        override.write_text(yaml.safe_dump({"services": services}))
        compose = Compose(project, [podman.ROOT / "docker-compose.yml", override], env)
        s = Stack(compose, port)
        try:
            start = time.monotonic()
            # migrate, api and worker share one image: build it once (podman-compose would build it
            # three times over, in parallel).
            podman.build([*compose.command, "build", "--pull", "never", "api"], env, log)
            log(f"image built from the Dockerfile in {time.monotonic() - start:.1f}s")
            s.up()
            yield s
        finally:
            s.down(volumes=True)
            left = compose.containers()
            volumes = podman.run(
                ["podman", "volume", "ls", "-q", "--filter", f"label=io.podman.compose.project={project}"], env
            ).stdout.split()
            if left or volumes:
                pytest.fail(f"`down -v` left containers {left} and volumes {volumes} of {project}")
