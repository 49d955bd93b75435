"""The audit trail: every mutation as asked and answered (SPEC: who moved money, when, how).

An entry is written in a transaction of its own, after the mutation's: a failed mutation changes
nothing, yet its attempt is still recorded with its error code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.model import AuditEntry
from domain.ports import UnitOfWork

REDACTED = "[redacted]"
# Argument names whose values are never stored (matched case-insensitively, as substrings).
SECRET_NAMES = ("secret", "token", "password")


def redact(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments with every secret-looking value replaced, at any depth."""

    def clean(key: str, value: Any) -> Any:
        if any(word in key.lower() for word in SECRET_NAMES):
            return REDACTED
        if isinstance(value, Mapping):
            return {k: clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(key, v) for v in value]
        if value is None or isinstance(value, str | int | float | bool):
            return value
        return str(value)  # Decimal, datetime, …: stored as text (JSON)

    return {k: clean(k, v) for k, v in arguments.items()}


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
