"""The trade export (issue 20): `GET /export/trades.csv` with the API's token gives the client's own
fills — the rows the `trades` query gives, field for field —, filtered by time and strategy, streamed
in constant memory (10,000 trades), and `criptoren export trades --client NAME` writes the same file."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from domain.ports import Page
from gql_api.auth import access_tokens
from gql_api.export import COLUMNS
from tests.e2e import servers
from tests.e2e.conftest import GraphQLClient

ROOT = Path(__file__).resolve().parents[2]
TRADES = """{ trades(first: 100) { nodes { id side price quantity quoteAmount fees feeAsset profit executedAt
                                        strategyId positionId symbol { symbol } order { clientOrderId } } }
              strategies { nodes { id name } } }"""


async def trading_history(db: App) -> int:
    """Client 1 (the demo) trades on two strategies, client 2 on one. Returns client 2's strategy id."""
    await seed_demo(db.uow, db.exchange)
    eth = await services.create_strategy(
        cmds.CreateStrategy(1, "ETHUSDT", "=ETH, the \"second\"", Channel(Decimal(2400), Decimal(2800))),
        db.uow(), db.exchange,
    )  # fmt: skip
    bob = await services.create_client(cmds.CreateClient("Bob"), db.uow())
    assert eth.id is not None and bob.id is not None
    bobs = await services.create_strategy(
        cmds.CreateStrategy(bob.id, "ETHUSDT", "Bob ETH", Channel(Decimal(2400), Decimal(2800))), db.uow(), db.exchange
    )
    assert bobs.id is not None
    for sid in (eth.id, bobs.id):
        await services.allocate_capital(cmds.AllocateCapital(sid, Decimal(1000)), db.uow(), db.exchange)
    for symbol, sid, buy_at, sell_at in (
        ("BTCUSDT", 1, Decimal(102500), Decimal(110000)),
        ("ETHUSDT", eth.id, Decimal(2450), Decimal(2700)),
        ("ETHUSDT", bobs.id, Decimal(2450), Decimal(2700)),
        ("ETHUSDT", eth.id, Decimal(2450), None),
    ):
        db.price_book.set(symbol, buy_at)
        position = await services.buy(cmds.Buy(sid, quote_amount=Decimal(100)), db.uow(), db.exchange, db.prices)
        if sell_at is not None:
            db.price_book.set(symbol, sell_at)
            await services.sell(cmds.Sell(position.id or 0), db.uow(), db.exchange, db.prices)
    return bobs.id


def parse(body: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(body))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def as_api_row(row: dict[str, str], names: dict[str, str]) -> dict[str, Any]:
    """A CSV row in the shape of a `trades` node."""
    return {
        "id": row["trade_id"], "side": row["side"], "price": row["price"], "quantity": row["quantity"],
        "quoteAmount": row["quote_amount"], "fees": row["fee"], "feeAsset": row["fee_asset"],
        "profit": row["realized_profit"] or None, "executedAt": datetime.fromisoformat(row["time"]),
        "strategyId": row["strategy_id"], "positionId": row["position_id"], "symbol": {"symbol": row["symbol"]},
        "order": {"clientOrderId": row["client_order_id"]}, "strategy": names[row["strategy_id"]],
    }  # fmt: skip


async def export(http: httpx.AsyncClient, token: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.get("/export/trades.csv", params=params, headers=headers)


async def test_the_export_has_the_rows_of_the_trades_query(
    db: App, http: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    bobs = await trading_history(db)
    data = await gql.data(TRADES)
    names = {s["id"]: s["name"] for s in data["strategies"]["nodes"]}
    api = sorted(
        ({**n, "executedAt": datetime.fromisoformat(n["executedAt"]), "strategy": names[n["strategyId"]]}
         for n in data["trades"]["nodes"]),
        key=lambda n: (n["executedAt"], int(n["id"])),
    )  # fmt: skip
    assert len(api) == 5 and {n["strategyId"] for n in api} == {"1", "2"}

    response = await export(http, gql.access_token)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="criptoren-trades-1-')
    rows = parse(response.text)
    # The same fills, field for field, oldest first; a name a spreadsheet would run is defused.
    named = {**names, "2": "'" + names["2"]}
    assert [as_api_row(r, named) for r in rows] == [{**n, "strategy": named[n["strategyId"]]} for n in api]
    assert rows[0]["time"].endswith("Z") and rows[0]["realized_profit"] == "" and rows[1]["realized_profit"]
    assert response.text.startswith(",".join(COLUMNS) + "\r\n")

    # One strategy; a period (from included, to excluded).
    eth = parse((await export(http, gql.access_token, strategyId="2")).text)
    assert [r["trade_id"] for r in eth] == [n["id"] for n in api if n["strategyId"] == "2"]
    cut = rows[3]["time"]
    later = parse((await export(http, gql.access_token, **{"from": cut})).text)
    earlier = parse((await export(http, gql.access_token, to=cut)).text)
    assert [r["trade_id"] for r in earlier + later] == [r["trade_id"] for r in rows] and len(later) == 2
    day = datetime.now(UTC).date()
    whole_days = parse((await export(http, gql.access_token, **{"from": str(day), "to": str(day + timedelta(1))})).text)
    assert whole_days == rows

    # Client B gets its own fills only, and cannot name A's strategy.
    b_token, _ = access_tokens(db.settings).issue(2)
    own = parse((await export(http, b_token)).text)
    assert {r["strategy_id"] for r in own} == {str(bobs)} and len(own) == 2
    assert not {r["trade_id"] for r in own} & {r["trade_id"] for r in rows}
    refused = await export(http, b_token, strategyId="1")
    assert refused.status_code == 404 and refused.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert refused.json() == (await export(http, b_token, strategyId="987654")).json() | {
        "errors": [{**refused.json()["errors"][0], "message": "Strategy 1 not found."}]
    }

    # Without a (valid) token, with bad parameters.
    for token in (None, "garbage", b_token[:-2] + "xx"):
        answer = await export(http, token)
        assert answer.status_code == 401 and answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    for params in ({"from": "yesterday"}, {"to": "2026-13-01"}, {"from": "2026-02-01", "to": "2026-01-01"}):
        answer = await export(http, gql.access_token, **params)
        assert answer.status_code == 400 and answer.json()["errors"][0]["extensions"]["code"] == "VALIDATION"


def cli(db: App, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": str(db.settings.database_url), "LOG_LEVEL": "INFO"}
    return subprocess.run(
        [sys.executable, "-m", "gql_api.cli", "export", "trades", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_criptoren_export_trades_writes_the_same_file(
    db: App, http: httpx.AsyncClient, gql: GraphQLClient, tmp_path: Path
) -> None:
    await trading_history(db)
    served = (await export(http, (await gql.login())["accessToken"], strategyId="2")).text
    out = tmp_path / "trades.csv"
    done = cli(db, "--client", "TradeBot XYZ", "--strategy-id", "2", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().decode() == served and "3 trades" in done.stderr
    to_stdout = cli(db, "--client", "TradeBot XYZ")
    assert len(parse(to_stdout.stdout)) == 5
    unknown = cli(db, "--client", "Nobody", "--output", str(tmp_path / "none.csv"))
    assert unknown.returncode == 1 and not (tmp_path / "none.csv").exists()
    other = cli(db, "--client", "Bob", "--strategy-id", "1")  # a strategy of another client
    assert other.returncode == 1 and "not found" in other.stderr


# ---------------------------------------------------------------- memory

N = 10_000
# Well above what the export holds (a page of 500 rows and its CSV text), well below the 10,000
# trades loaded at once (measured: about 1 MB for the export, 20 MB for a full load).
BOUND = 6 * 1024 * 1024


async def test_a_10000_trade_export_streams_in_constant_memory(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    db.price_book.set("BTCUSDT", Decimal(102500))
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                """INSERT INTO trades (client_id, symbol_id, strategy_id, position_id, order_id, side, price, quantity,
                                       quote_amount, fees, fee_asset, profit, notes, executed_at)
                   SELECT 1, 1, 1, :p, o.id, 'sell', 102500 + g, 0.001, 102.5 + g / 1000.0, 0.1025, 'USDT', 0.5,
                          'exit', now() - interval '1 day' + g * interval '1 second'
                   FROM generate_series(1, :n) g, (SELECT id FROM orders LIMIT 1) o"""
            ),
            {"p": position.id, "n": N},
        )
    token, _ = access_tokens(db.settings).issue(1)
    headers = {"Authorization": f"Bearer {token}"}
    async with servers.api_server(db) as host, httpx.AsyncClient(base_url=f"http://{host}", headers=headers) as http:

        async def stream(**params: str) -> tuple[int, int]:
            lines = size = 0
            async with http.stream("GET", "/export/trades.csv", params=params, timeout=60) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_bytes():
                    lines += chunk.count(b"\r\n")
                    size += len(chunk)
            return lines, size

        await stream(**{"from": "2100-01-01"})  # warm up: connections, statements compiled
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            lines, size = await stream()
            export_peak = tracemalloc.get_traced_memory()[1] - base
            # What the export avoids: the same trades loaded at once.
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            async with db.uow() as uow:
                everything = await uow.trades.list(Page(N + 10), client_id=1)
            full_peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    assert lines == N + 2 and len(everything) == N + 1  # the header, the buy and the 10,000 sells
    print(f"\nexport of {N + 1} trades ({size / 1e6:.1f} MB): peak {export_peak / 1e6:.2f} MB; "
          f"full load: peak {full_peak / 1e6:.2f} MB")  # fmt: skip
    assert export_peak < BOUND < full_peak, (export_peak, full_peak)
