"""Binance public market streams (no API key): `<symbol>@aggTrade` ticks and `<symbol>@kline_1m`
closed candles, through python-binance's `BinanceSocketManager` (combined stream
`/stream?streams=a/b`).

Resilience (the live-loop issue): a stream that errors, closes or stays silent for
`stall_seconds` is treated as dropped; we reconnect with exponential backoff and jitter. On
reconnect, before the live messages: the aggregate trades missed since the last one seen are
fetched over REST (`GET /api/v3/aggTrades?fromId=`, up to `max_gap_trades`) and delivered as ticks,
so no level crossing is skipped; the 1m klines closed during the gap are fetched too (stored, and
judged for channel breaks). When the gap holds more trades than that, the closed klines' paths
(O->L->H->C / O->H->L->C) are replayed as ticks instead. Aggregate trade ids are the ticks' `seq`:
duplicated or replayed messages (same or older id) are dropped. `stream_state(symbol)` says whether a
stream is up or lost, since when: the worker records a loss that outlasts a grace, and the return,
as events (`workers.stream_alerts`).

`api_url` / `stream_url` point the unmodified library at another host (tests use a local
Binance on 127.0.0.1): python-binance reads `API_URL` on the client and `STREAM_URL` on the socket
manager (SPEC §8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from binance import AsyncClient, BinanceSocketManager

from domain import channel as ch
from domain.adapters.ops import metrics
from domain.market import ClosedCandle, MarketEvent, StreamState, Tick

log = logging.getLogger("criptoren.market.binance")


class StreamDropped(Exception):
    pass


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def kline_candle(symbol: str, interval: str, row: Sequence[Any]) -> ClosedCandle:
    """A REST kline row `[openTime, open, high, low, close, volume, closeTime, …]`."""
    open_time = _ms(int(row[0]))
    return ClosedCandle(
        symbol, interval, open_time, open_time + ch.timeframe_delta(interval),
        Decimal(row[1]), Decimal(row[2]), Decimal(row[3]), Decimal(row[4]), Decimal(row[5]),
    )  # fmt: skip


class BinanceMarket:
    name = "binance"
    fills_at_levels = False

    def __init__(
        self,
        *,
        api_url: str | None = None,
        stream_url: str | None = None,
        testnet: bool = False,
        stall_seconds: float = 30.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_gap_trades: int = 10_000,
    ) -> None:
        self.api_url = api_url
        self.stream_url = stream_url
        self.testnet = testnet
        self.stall_seconds = stall_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_gap_trades = max_gap_trades
        self.reconnects = 0
        self._client: AsyncClient | None = None
        self._states: dict[str, StreamState] = {}  # per symbol streamed (`stream_state`)

    def stream_state(self, symbol: str) -> StreamState | None:
        """`StreamStatus`: up since the first message after a (re)connection; lost since the first
        failure after the last message (the reconnection attempts in between do not move it)."""
        return self._states.get(symbol)

    def _lost(self, symbol: str, reason: str) -> None:
        state = self._states.get(symbol)
        if state is None or state.up:
            self._states[symbol] = StreamState(False, datetime.now(UTC), reason)

    @staticmethod
    async def ping(testnet: bool = False) -> bool:
        client = await AsyncClient.create(testnet=testnet)
        await client.close_connection()
        return True

    async def client(self) -> AsyncClient:
        if self._client is None:
            client = AsyncClient(testnet=self.testnet)
            if self.api_url:
                client.API_URL = self.api_url
            self._client = client
        return self._client

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    async def closed_candles(
        self, symbol: str, interval: str, start: datetime, end: datetime
    ) -> Sequence[ClosedCandle]:
        client = await self.client()
        rows = await client.get_klines(
            symbol=symbol, interval=interval, startTime=int(start.timestamp() * 1000),
            endTime=int(end.timestamp() * 1000), limit=1000,
        )  # fmt: skip
        candles = [kline_candle(symbol, interval, row) for row in rows]
        # The last row may be the candle still open: only closed ones (close_time <= end).
        return [c for c in candles if start < c.close_time <= end]

    async def trades_since(self, symbol: str, last_seq: int) -> list[Tick] | None:
        """Aggregate trades after `last_seq`, oldest first; None when the gap is too long to fetch."""
        client = await self.client()
        ticks: list[Tick] = []
        while len(ticks) < self.max_gap_trades:
            rows = await client.get_aggregate_trades(symbol=symbol, fromId=last_seq + 1, limit=1000)
            ticks += [Tick(symbol, Decimal(r["p"]), _ms(int(r["T"])), int(r["a"])) for r in rows]
            if len(rows) < 1000:
                return ticks
            last_seq = int(rows[-1]["a"])
        return None

    async def server_time(self) -> datetime:
        client = await self.client()
        return _ms(int((await client.get_server_time())["serverTime"]))

    async def stream(self, symbol: str, after_seq: int | None = None) -> AsyncIterator[MarketEvent]:
        last_seq = after_seq if after_seq is not None else -1
        last_close: datetime | None = None
        last_price: Decimal | None = None
        attempt = 0
        lower = symbol.lower()
        self._states.pop(symbol, None)  # what an earlier stream of it said no longer holds
        while True:
            try:
                manager = BinanceSocketManager(await self.client())
                if self.stream_url:
                    manager.STREAM_URL = self.stream_url
                socket = manager.multiplex_socket([f"{lower}@aggTrade", f"{lower}@kline_1m"])
                # The socket's own exit can hang on a dead connection: bounded here.
                ws = await socket.__aenter__()
                flowing = False  # up again once a message arrives (not merely connected)
                try:
                    if attempt:
                        # The gap, before the live messages: the trades missed (or the paths of the
                        # candles closed meanwhile), and the closed candles.
                        trades = await self.trades_since(symbol, last_seq) if last_seq >= 0 else []
                        gap: Sequence[ClosedCandle] = []
                        if last_close is not None:
                            gap = await self.closed_candles(symbol, "1m", last_close, await self.server_time())
                        log.info(
                            "%s stream back: %s missed trades, %d closed candles",
                            symbol, "too many" if trades is None else len(trades), len(gap),
                        )  # fmt: skip
                        for tick in trades or []:
                            last_seq, last_price = tick.seq, tick.price
                            yield tick
                        for candle in gap:
                            if trades is None:
                                path = ch.replay_path(last_price, candle.open, candle.high, candle.low, candle.close)
                                for price in path:
                                    last_price = price
                                    yield Tick(symbol, price, candle.open_time, last_seq)
                            last_close = candle.close_time
                            yield candle
                    attempt = 0
                    while True:
                        try:
                            message = await asyncio.wait_for(ws.recv(), self.stall_seconds)
                        except TimeoutError:
                            raise StreamDropped(f"no message for {self.stall_seconds} s") from None
                        data = message.get("data", message)
                        kind = data.get("e")
                        if kind == "error":
                            raise StreamDropped(str(data.get("m") or data.get("type")))
                        if not flowing:
                            flowing = True
                            self._states[symbol] = StreamState(True, datetime.now(UTC))
                        if kind == "aggTrade":
                            seq = int(data["a"])
                            if seq <= last_seq:
                                continue  # duplicate or replayed message
                            last_seq, last_price = seq, Decimal(data["p"])
                            yield Tick(symbol, last_price, _ms(int(data["T"])), seq)
                        elif kind == "kline" and data["k"].get("x"):
                            k = data["k"]
                            candle = kline_candle(symbol, "1m", [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"]])
                            if last_close is None or candle.close_time > last_close:
                                last_close = candle.close_time
                                yield candle
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(socket.__aexit__(None, None, None), 2.0)
                    connection = getattr(socket, "ws", None)
                    if connection is not None and getattr(connection, "transport", None) is not None:
                        connection.transport.abort()  # never leave a half-closed socket behind
            except Exception as e:  # any failure of the stream is a drop: reconnect (cancellation passes)
                attempt += 1
                self.reconnects += 1
                self._lost(symbol, str(e) or type(e).__name__)
                metrics.STREAM_RECONNECTS.labels(symbol).inc()
                wait = self.backoff(attempt)
                log.warning("%s stream dropped (%s); reconnecting in %.1f s", symbol, e, wait)
                await asyncio.sleep(wait)
                if last_close is None:
                    last_close = datetime.now(UTC) - timedelta(minutes=1)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close_connection()
            self._client = None
