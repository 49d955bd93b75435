"""What the audit log keeps of a mutation's arguments (issue 17, item 4): no credential, and a
small entry whatever the caller sends."""

from __future__ import annotations

import json
from decimal import Decimal

from domain.audit import MAX_ENTRY_CHARS, MAX_ITEMS, MAX_TEXT, REDACTED, redact


def test_credentials_are_redacted_and_api_keys_reduced_to_a_hint() -> None:
    kept = redact({"apiKey": "ck_abcdefgh1234", "apiSecret": "cs_s", "input": {"refreshToken": "rt", "password": "p"}})
    assert kept == {"apiKey": "…1234", "apiSecret": REDACTED, "input": {"refreshToken": REDACTED, "password": REDACTED}}
    # A "key" too short to hint at, or too long to be one, is not kept at all.
    assert redact({"apiKey": "abc"})["apiKey"] == REDACTED
    assert redact({"apiKey": "k" * 5000})["apiKey"] == REDACTED
    assert redact({"apiKey": None}) == {"apiKey": None}


def test_text_lists_and_nesting_are_cut() -> None:
    kept = redact({"note": "x" * 9000, "ids": list(range(500)), "amount": Decimal("1.50")})
    assert kept["note"] == "x" * MAX_TEXT + "… [9,000 characters]"
    assert kept["ids"] == [*range(MAX_ITEMS), f"[{500 - MAX_ITEMS} more]"]
    assert kept["amount"] == "1.50"
    deep: dict[str, object] = {"v": 1}
    for _ in range(50):
        deep = {"n": deep}
    assert "[nested too deep]" in json.dumps(redact({"input": deep}))


def test_an_entry_stays_small_whatever_is_sent() -> None:
    wide = {f"field{i}": {f"k{j}": "y" * MAX_TEXT for j in range(MAX_ITEMS)} for i in range(MAX_ITEMS)}
    kept = redact(wide)
    assert len(json.dumps(kept)) <= MAX_ENTRY_CHARS
    assert kept["[truncated]"].startswith("arguments over")
