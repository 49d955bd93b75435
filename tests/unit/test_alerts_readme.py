"""The README's signature verification example (section "Alerts") verifies what the server signs,
and refuses a tampered body, another secret and a stale timestamp."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from domain.adapters.alerts import sign

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verify() -> Any:
    section = README.read_text().split("## Alerts", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(code.strip().splitlines()) <= 10  # "a ten-line example"
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # our own README
    return namespace["verify"]


def test_the_readme_example_verifies_the_servers_signature() -> None:
    verify = readme_verify()
    body, now = b'{"id":"evt_1","type":"position_opened"}', str(int(time.time()))
    headers = {"X-Criptoren-Timestamp": now, "X-Criptoren-Signature": sign("whsec_s", now, body)}
    assert verify("whsec_s", headers, body)
    assert not verify("whsec_other", headers, body)
    assert not verify("whsec_s", headers, body.replace(b"evt_1", b"evt_2"))
    old = str(int(time.time()) - 3600)
    assert not verify(
        "whsec_s", {"X-Criptoren-Timestamp": old, "X-Criptoren-Signature": sign("whsec_s", old, body)}, body
    )
    assert not verify("whsec_s", {}, body)
