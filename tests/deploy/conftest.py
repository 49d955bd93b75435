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
from tests.deploy.podman import Compose
from tests.deploy.stack import TEST_SETTINGS, Stack, log


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
            label = f"label=io.podman.compose.project={project}"
            left = {
                "containers": compose.containers(),
                "volumes": podman.run(["podman", "volume", "ls", "-q", "--filter", label], env).stdout.split(),
                "pods": podman.run(["podman", "pod", "ps", "-q", "--filter", f"name={project}"], env).stdout.split(),
                "networks": podman.run(["podman", "network", "ls", "-q", "--filter", label], env).stdout.split(),
            }
            if any(left.values()):
                pytest.fail(f"`down -v` left {left} of {project}")
