"""The trade export: a client's fills as CSV, for an accountant or a spreadsheet.

`GET /export/trades.csv?from=&to=&strategyId=` with the API's access token (`Authorization: Bearer
…`, the client's own trades only), and `criptoren export trades --client NAME` on the server. One
row per fill, oldest first (by execution time, then trade id); `from` (inclusive) and `to`
(exclusive) are ISO 8601 dates or times, UTC unless they say otherwise. Columns:

| column | what |
|---|---|
| `time` | execution time, UTC, ISO 8601 (`2026-11-28T10:15:00.000000Z`) |
| `symbol` | e.g. `BTCUSDT` |
| `side` | `BUY` or `SELL` |
| `price` | average fill price, in the quote asset |
| `quantity` | gross quantity filled, in the base asset |
| `quote_amount` | gross value filled, in the quote asset (price × quantity) |
| `fee` | fee charged, in `fee_asset` |
| `fee_asset` | the asset the fee was charged in (the base asset on buys, the quote asset on sells, or BNB) |
| `realized_profit` | sells: proceeds after fees minus the position's cost, in the quote asset; empty on buys |
| `strategy_id`, `strategy` | the strategy's id and name |
| `position_id` | the position the fill opened or sold |
| `client_order_id` | Criptoren's id of the exchange order (as on Binance) |
| `trade_id` | Criptoren's id of the fill |

Numbers are plain decimals with a dot and no exponent, exactly as the API gives them. A text cell
that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`) is prefixed with `'`.

The file is streamed: read a page of rows at a time (`domain.views.trade_export`), so the server's
memory does not grow with the history.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from domain import views
from domain.adapters.bootstrap import App
from domain.errors import DomainError, NotFound, Unauthenticated, ValidationError
from domain.ports import ExportedTrade, UnitOfWorkFactory
from gql_api.auth import authenticate, bearer_token
from gql_api.scalars import serialize_decimal

COLUMNS = (
    "time", "symbol", "side", "price", "quantity", "quote_amount", "fee", "fee_asset", "realized_profit",
    "strategy_id", "strategy", "position_id", "client_order_id", "trade_id",
)  # fmt: skip
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
STATUS = {"UNAUTHENTICATED": 401, "NOT_FOUND": 404, "VALIDATION": 400}


def _text(value: str | None) -> str:
    if not value:
        return ""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def csv_row(t: ExportedTrade) -> list[str]:
    return [
        t.executed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        t.symbol,
        t.side.value.upper(),
        serialize_decimal(t.price),
        serialize_decimal(t.quantity),
        serialize_decimal(t.quote_amount),
        serialize_decimal(t.fee),
        t.fee_asset,
        "" if t.realized_profit is None else serialize_decimal(t.realized_profit),
        "" if t.strategy_id is None else str(t.strategy_id),
        _text(t.strategy),
        "" if t.position_id is None else str(t.position_id),
        t.client_order_id or "",
        str(t.id),
    ]


def _lines(rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def csv_chunks(uow: UnitOfWorkFactory, export: views.TradeExport) -> AsyncIterator[str]:
    """The CSV text, the header first, then one chunk per page of fills."""
    yield _lines([COLUMNS])
    async for page in views.trade_export(uow, export):
        yield _lines([csv_row(t) for t in page])


def parse_time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date (midnight UTC) or time (UTC unless it carries its offset)."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value) if "T" in value or " " in value else None
        if parsed is None:
            day = date.fromisoformat(value)
            parsed = datetime(day.year, day.month, day.day)
    except ValueError:
        raise ValidationError(
            f"{name} must be an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z.", field=name
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_strategy_id(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        parsed = int(value)
    except ValueError:
        raise NotFound(f"Strategy {value} not found.", entity="Strategy", id=value) from None
    if not 0 < parsed < 2**31:
        raise NotFound(f"Strategy {value} not found.", entity="Strategy", id=value)
    return parsed


def _error(error: DomainError) -> JSONResponse:
    body = {"errors": [{"message": error.message, "extensions": {"code": error.code}}]}
    return JSONResponse(body, status_code=STATUS.get(error.code, 400))


async def trades_csv(request: Request) -> Response:
    """`GET /export/trades.csv`: the current client's fills (see the module's docstring)."""
    app: App = request.app.state.criptoren
    try:
        token = bearer_token(request.headers.get("authorization"))
        if not token:
            raise Unauthenticated("An access token is required: send Authorization: Bearer <accessToken>.")
        client_id = await authenticate(app, token)
        params = request.query_params
        export = views.TradeExport(
            client_id=client_id,
            start=parse_time(params.get("from"), "from"),
            end=parse_time(params.get("to"), "to"),
            strategy_id=parse_strategy_id(params.get("strategyId")),
        )
        async with app.uow() as uow:
            await views.check_trade_export(uow, export, client_id)
    except DomainError as e:
        return _error(e)
    day = datetime.now(UTC).strftime("%Y%m%d")
    headers = {
        "Content-Disposition": f'attachment; filename="criptoren-trades-{client_id}-{day}.csv"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(csv_chunks(app.uow, export), media_type="text/csv; charset=utf-8", headers=headers)
