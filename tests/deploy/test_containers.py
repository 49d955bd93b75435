"""The deployment, proven: the image built from the repository's Dockerfile and the compose stack
(PostgreSQL, Redis, the one-shot migrate, the API and a worker) brought up with podman, then checked
from outside, as an operator would (README, "Deploy"). The stack is shared by the tests of this
module, in file order; the last one takes it down and up again."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from tests.deploy import podman
from tests.deploy.stack import IMAGE, Stack

LOGIN = "mutation($k: String!, $s: String!) { login(apiKey: $k, apiSecret: $s) { accessToken clientId } }"
CREATE_STRATEGY = """
mutation { createStrategy(input: {symbol: "ETHUSDT", name: "Survives restarts",
                                  basePrice: "2300", topPrice: "2900"}) { id name } }
"""
STRATEGIES = "{ me { name } strategies(first: 10) { nodes { id name basePrice topPrice } } }"


def poll(stack: Stack, path: str, within: float, service: str = "api") -> httpx.Response:
    """GET `path` until it answers 200; fail after `within` seconds with the last answer and the
    service's logs."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            response = httpx.get(stack.base_url + path, timeout=10)
            if response.status_code == 200:
                return response
            last = f"{response.status_code} {response.text[:2000]}"
        except httpx.HTTPError as e:
            last = repr(e)
        if time.monotonic() > deadline:
            pytest.fail(f"GET {path} not 200 within {within:.0f}s: {last}\n{stack.compose.logs(service)}")
        time.sleep(2)


def graphql(stack: Stack, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
    """POST a GraphQL request to the published port; fail on any error, with the API's logs."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{stack.base_url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers, timeout=30
    )
    try:
        body = response.json()
    except ValueError:
        body = {"errors": [response.text[:2000]]}
    if response.status_code != 200 or body.get("errors"):
        pytest.fail(
            f"{query.strip()[:80]}: {response.status_code} {json.dumps(body)[:2000]}\n{stack.compose.logs('api')}"
        )
    return body["data"]


def create_client(stack: Stack, name: str) -> tuple[str, str]:
    """`criptoren client create` inside the API container, as the README says; its key and secret."""
    out = stack.compose.exec("api", "criptoren", "client", "create", "--name", name).stdout
    key = re.search(r"API key:\s+(\S+)", out)
    secret = re.search(r"API secret:\s+(\S+)", out)
    assert key and secret, out
    return key.group(1), secret.group(1)


def login(stack: Stack, key: str, secret: str) -> str:
    return str(graphql(stack, LOGIN, {"k": key, "s": secret})["login"]["accessToken"])


def test_the_image_runs_as_an_unprivileged_user(stack: Stack) -> None:
    image = podman.run(["podman", "image", "inspect", "--format", "{{.Config.User}}", IMAGE], stack.compose.env)
    assert image.stdout.strip() == "criptoren"
    for service in ("api", "worker"):
        # The service's own process (PID 1 of its container), not only what `exec` gets.
        status = stack.compose.exec(service, "cat", "/proc/1/status").stdout
        uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
        gids = re.search(r"^Gid:\s+(.*)$", status, re.MULTILINE)
        assert uids and set(uids.group(1).split()) == {"10001"}, (service, status)
        assert gids and "0" not in gids.group(1).split(), (service, status)


def test_the_api_is_live_and_ready_on_the_published_port(stack: Stack) -> None:
    assert poll(stack, "/healthz", 60).status_code == 200
    ready = poll(stack, "/readyz", 120).json()
    assert ready["status"] == "ready", ready
    assert ready["checks"]["postgres"]["ok"] and ready["checks"]["redis"]["ok"], ready


def test_a_client_created_in_the_container_logs_in(stack: Stack) -> None:
    key, secret = create_client(stack, "Deploy test")
    token = login(stack, key, secret)
    assert graphql(stack, STRATEGIES, token=token)["me"]["name"] == "Deploy test"


def test_the_worker_is_healthy_and_serves_its_metrics(stack: Stack) -> None:
    stack.compose.wait_healthy("worker", 60)
    fetch = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9100/metrics', timeout=5).read().decode())"
    metrics = stack.compose.exec("worker", "python", "-c", fetch).stdout
    assert "# TYPE" in metrics and "criptoren_" in metrics, metrics[:2000]


def test_data_survives_down_and_up(stack: Stack) -> None:
    """`down` keeps the named volumes: the client and its strategy are there after `up`, and the
    worker consumes the strategy's symbol again (ready again)."""
    # A new database knows no symbol until the demo's seed (createStrategy: "Symbol ETHUSDT is not known").
    stack.compose.exec("api", "criptoren", "seed-demo")
    key, secret = create_client(stack, "Persistence")
    token = login(stack, key, secret)
    created = graphql(stack, CREATE_STRATEGY, token=token)["createStrategy"]
    # The worker picks up the new strategy's symbol: /readyz waits for its stream.
    poll(stack, "/readyz", 120, service="worker")

    stack.down(volumes=False)
    assert stack.compose.containers() == [], "down left containers"
    stack.up()

    # The client and its strategy, from PostgreSQL's volume (a new volume: UNAUTHENTICATED here).
    token = login(stack, key, secret)
    strategies = graphql(stack, STRATEGIES, token=token)["strategies"]["nodes"]
    assert [(s["id"], s["name"]) for s in strategies] == [(created["id"], "Survives restarts")], (
        f"the strategy created before `down` is not there after `up`: {strategies}"
    )
    ready = poll(stack, "/readyz", 120, service="worker").json()
    assert ready["checks"]["market"]["ok"], ready
