"""The `Audited` field extension: records a mutation in `audit_log` — client, time, arguments
(secrets redacted), and the result's id or the error code — after it ran, successful or not."""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.utils.str_converters import to_camel_case

from domain import audit
from domain.errors import DomainError
from gql_api.context import Info

log = logging.getLogger("criptoren.audit")


def jsonable(value: Any) -> Any:
    """Arguments as JSON: GraphQL (camelCase) names, Decimals as strings, enums as their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {to_camel_case(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Decimal | datetime):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def error_code(error: BaseException) -> str:
    if isinstance(error, DomainError):
        return error.code
    if isinstance(error, GraphQLError) and error.extensions and "code" in error.extensions:
        return str(error.extensions["code"])
    return "INTERNAL"


def summarize(result: Any) -> dict[str, Any]:
    """What the audit keeps of a result: its type and id — never tokens or other payload."""
    summary: dict[str, Any] = {"type": type(result).__name__}
    for attribute in ("id", "status", "client_id"):
        value = getattr(result, attribute, None)
        if value is not None:
            summary[to_camel_case(attribute)] = jsonable(value)
    if isinstance(result, bool):
        summary["value"] = result
    return summary


class Audited(FieldExtension):
    async def resolve_async(self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any) -> Any:
        context = info.context
        arguments = jsonable(kwargs)
        try:
            result = await next_(source, info, **kwargs)
        except Exception as e:
            await self._record(info, arguments, context.client_id, error_code=error_code(e))
            raise
        client_id = context.client_id or getattr(result, "client_id", None)
        await self._record(info, arguments, client_id, result=summarize(result))
        return result

    async def _record(self, info: Info, arguments: dict[str, Any], client_id: Any, **outcome: Any) -> None:
        try:
            await audit.record(
                info.context.app.uow(),
                info.field_name,
                arguments,
                int(client_id) if client_id is not None else None,
                datetime.now(UTC),
                **outcome,
            )
        except Exception:
            # The mutation's own transaction is already settled: report loudly, answer anyway.
            log.exception("Could not write the audit entry of %s", info.field_name)
