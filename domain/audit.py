"""The audit trail: every mutation as asked and answered (SPEC: who moved money, when, how).

An entry is written in a transaction of its own, after the mutation's: a failed mutation changes
nothing, yet its attempt is still recorded with its error code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.model import AuditEntry
from domain.ports import UnitOfWork

REDACTED = "[redacted]"
# Argument names whose values are never stored (matched case-insensitively, as substrings).
SECRET_NAMES = ("secret", "token", "password")
# Names of identifiers that are half a credential (an API key): only their last characters are kept.
KEY_NAMES = ("key",)
KEY_HINT = 4
# An entry stays small whatever a caller sends (an attacker must not fill the disk through it):
# text is cut, lists are cut, nesting is cut, and an entry over MAX_ENTRY_CHARS keeps only a note.
MAX_TEXT = 200
MAX_ITEMS = 20
MAX_DEPTH = 4
MAX_ENTRY_CHARS = 4000


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}… [{len(text):,} characters]"


def _hint(value: Any) -> str:
    """`…abcd` for an API key: enough to tell which key was tried, not enough to use it."""
    if isinstance(value, str) and 2 * KEY_HINT <= len(value) <= MAX_TEXT:
        return "…" + value[-KEY_HINT:]
    return REDACTED


def redact(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as the audit log keeps them: every secret-looking value replaced, API keys
    reduced to their last characters, long text and lists cut, at any depth (SPEC §8: the audit
    log records who did what, never a credential)."""

    def clean(key: str, value: Any, depth: int) -> Any:
        name = key.lower()
        if any(word in name for word in SECRET_NAMES):
            return REDACTED
        if any(word in name for word in KEY_NAMES) and value is not None:
            return _hint(value)
        if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
            return "[nested too deep]"
        if isinstance(value, Mapping):
            items = list(value.items())
            kept = {_cut(str(k)): clean(str(k), v, depth + 1) for k, v in items[:MAX_ITEMS]}
            if len(items) > MAX_ITEMS:
                kept["…"] = f"[{len(items) - MAX_ITEMS} more]"
            return kept
        if isinstance(value, list | tuple):
            kept_list = [clean(key, v, depth + 1) for v in value[:MAX_ITEMS]]
            if len(value) > MAX_ITEMS:
                kept_list.append(f"[{len(value) - MAX_ITEMS} more]")
            return kept_list
        if isinstance(value, str):
            return _cut(value)
        if value is None or isinstance(value, int | float | bool):
            return value
        return _cut(str(value))  # Decimal, datetime, …: stored as text (JSON)

    cleaned = {_cut(k): clean(k, v, 0) for k, v in list(arguments.items())[:MAX_ITEMS]}
    if len(json.dumps(cleaned, default=str)) > MAX_ENTRY_CHARS:
        return {"[truncated]": f"arguments over {MAX_ENTRY_CHARS:,} characters", "names": sorted(cleaned)[:MAX_ITEMS]}
    return cleaned


async def record(
    uow: UnitOfWork,
    mutation: str,
    arguments: Mapping[str, Any],
    client_id: int | None,
    now: datetime,
    *,
    result: dict[str, Any] | None = None,
    error_code: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        mutation=mutation,
        arguments=redact(arguments),
        client_id=client_id,
        result=result,
        error_code=error_code,
        created_at=now,
    )
    async with uow:
        uow.audit.add(entry)
        await uow.commit()
    return entry


async def entries(uow: UnitOfWork, client_id: int, limit: int = 100) -> Sequence[AuditEntry]:
    async with uow:
        return await uow.audit.list_by_client(client_id, limit)
