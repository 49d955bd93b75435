"""`ExchangeRouter`: the `Exchange` port for many clients, each on its own account (issue 4).

With `EXCHANGE=binance`, a client that stored its Binance keys (`domain.services.exchange_keys`) trades on
its own Binance account — one `BinanceExchange` per key, all sharing one `RequestGate`, since
Binance counts request weight per IP — and a client without keys trades on paper.

Why a router: the services take one `exchange` and ask it `for_client(client_id)` for the account of
the client whose strategy or position they handle (one line each), so they read the same whatever
the mix of clients; a one-account adapter (paper, a single Binance key) answers with itself.

Resolution: the first request for a client reads its keys, decrypts the secret (`SecretCipher`),
starts its adapter (connect, filters, commission; in a worker also the user data stream) and keeps
it. Keys are read again at most every `recheck_seconds`, so keys set or cleared through the API take
effect within that time in every process. An account that cannot start (keys refused, Binance
unreachable, a secret that no longer decrypts) raises an `ExchangeError`, remembered for
`retry_seconds` so that a tick does not hammer Binance; the services skip that client meanwhile.

Order updates: `order_updates()` merges the fills of resting orders reported by every account (the
worker's consumer applies them, `services.apply_order_update`); `watch` an order on its client's
account (`(await router.for_client(client_id)).watch(...)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from domain.adapters.exchanges.secrets import SecretDecryptionError, redact
from domain.errors import ExchangeError, PermanentExchangeError, TemporaryExchangeError
from domain.model import Symbol, TimeInForce
from domain.ports import Exchange, Execution, OrderUpdates, SecretCipher, UnitOfWorkFactory

if TYPE_CHECKING:
    from domain.adapters.exchanges.binance import BinanceExchange

log = logging.getLogger("criptoren.exchange")


@dataclass
class _Account:
    fingerprint: tuple[str, str] | None  # (API key, encrypted secret); None: paper
    exchange: Exchange | None  # None: it could not start, see `error`
    fresh_until: float
    error: tuple[type[ExchangeError], str] | None = None


class ExchangeRouter:
    """Routes each client to its own exchange account: Binance with its keys, else paper."""

    name = "binance+paper"
    # Per client: the engine keeps watching scheduled prices for clients on paper; for a client on
    # Binance `for_client(...).rests_limit_orders` is True and its scheduled sells rest there.
    rests_limit_orders = False

    def __init__(
        self,
        paper: Exchange,
        uow: UnitOfWorkFactory,
        cipher: SecretCipher | None,
        open_account: Callable[[str, str], BinanceExchange],
        *,
        recheck_seconds: float = 10.0,
        retry_seconds: float = 30.0,
    ) -> None:
        self.paper = paper
        self.uow = uow
        self.cipher = cipher
        self.open_account = open_account
        self.recheck_seconds = recheck_seconds
        self.retry_seconds = retry_seconds
        self._accounts: dict[int, _Account] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._updates: asyncio.Queue[Execution] = asyncio.Queue()
        self._pumps: dict[int, asyncio.Task[None]] = {}
        self._closing = False

    def __repr__(self) -> str:
        return f"ExchangeRouter({len(self.binance_accounts)} Binance accounts)"

    # ------------------------------------------------------------ resolution

    async def for_client(self, client_id: int) -> Exchange:
        entry = self._accounts.get(client_id)
        if entry is None or time.monotonic() >= entry.fresh_until:
            lock = self._locks.setdefault(client_id, asyncio.Lock())
            async with lock:
                entry = self._accounts.get(client_id)
                if entry is None or time.monotonic() >= entry.fresh_until:
                    entry = await self._resolve(client_id, entry)
        if entry.exchange is None:
            assert entry.error is not None
            error_type, message = entry.error
            raise error_type(message, client_id=client_id)
        return entry.exchange

    def refresh(self, client_id: int | None = None) -> None:
        """Read the keys of a client (of all, with None) again at its next request."""
        for cid, entry in self._accounts.items():
            if client_id is None or cid == client_id:
                entry.fresh_until = 0.0

    async def _resolve(self, client_id: int, previous: _Account | None) -> _Account:
        async with self.uow() as uow:
            client = await uow.clients.get(client_id)
        key = client.binance_api_key if client else None
        token = client.binance_api_secret_encrypted if client else None
        fingerprint = (key, token) if key and token else None
        now = time.monotonic()
        if previous is not None and previous.fingerprint == fingerprint and previous.exchange is not None:
            previous.fresh_until = now + self.recheck_seconds
            return previous
        if fingerprint is None:
            entry = _Account(None, self.paper, now + self.recheck_seconds)
            if previous is not None and previous.fingerprint is not None:
                log.info("Client %s has no exchange keys any more: it trades on paper.", client_id)
        else:
            entry = await self._open(client_id, *fingerprint)
        self._accounts[client_id] = entry
        if previous is not None and previous.exchange is not None and previous.exchange is not entry.exchange:
            await self._retire(client_id, previous.exchange)
        return entry

    async def _open(self, client_id: int, api_key: str, token: str) -> _Account:
        now = time.monotonic()
        fingerprint = (api_key, token)
        if self.cipher is None:
            reason = "CRIPTOREN_SECRET_KEY is not set: its secret cannot be read."
            return self._failed(client_id, fingerprint, PermanentExchangeError, reason)
        try:
            secret = self.cipher.decrypt(token)
        except SecretDecryptionError:
            return self._failed(
                client_id,
                fingerprint,
                PermanentExchangeError,
                "its stored secret does not decrypt under CRIPTOREN_SECRET_KEY (changed?): set the keys again.",
            )
        account = self.open_account(api_key, secret)
        try:
            await account.start()
        except ExchangeError as e:
            kind = PermanentExchangeError if isinstance(e, PermanentExchangeError) else TemporaryExchangeError
            return self._failed(client_id, fingerprint, kind, f"its Binance account did not start: {e.message}")
        log.info("Client %s trades on Binance with key %s.", client_id, redact(api_key, show=4))
        self._pumps[client_id] = asyncio.get_running_loop().create_task(
            self._pump(account), name=f"order-updates-client-{client_id}"
        )
        return _Account(fingerprint, account, now + self.recheck_seconds)

    def _failed(self, client_id: int, fingerprint: tuple[str, str], kind: type[ExchangeError], reason: str) -> _Account:
        log.warning("Client %s cannot trade on Binance now: %s Retry in %s s.", client_id, reason, self.retry_seconds)
        message = f"The exchange account of client {client_id} cannot trade now: {reason}"
        return _Account(fingerprint, None, time.monotonic() + self.retry_seconds, (kind, message))

    async def _retire(self, client_id: int, exchange: Exchange) -> None:
        if exchange is self.paper:
            return
        pump = self._pumps.pop(client_id, None)
        if pump is not None:
            pump.cancel()
        close = getattr(exchange, "close", None)
        if close is not None:
            await close()

    # ------------------------------------------------------------ order updates

    async def _pump(self, account: Exchange) -> None:
        if isinstance(account, OrderUpdates):
            async for execution in account.order_updates():
                self._updates.put_nowait(execution)

    async def order_updates(self) -> AsyncIterator[Execution]:
        """Updates of resting orders from every client's account, as they come (one consumer)."""
        while True:
            yield await self._updates.get()

    @property
    def binance_accounts(self) -> dict[int, Exchange]:
        """The started Binance accounts, by client."""
        return {
            cid: e.exchange
            for cid, e in self._accounts.items()
            if e.exchange is not None and e.exchange is not self.paper
        }

    async def close(self) -> None:
        self._closing = True
        for client_id, entry in list(self._accounts.items()):
            if entry.exchange is not None:
                with contextlib.suppress(Exception):
                    await self._retire(client_id, entry.exchange)
        self._accounts.clear()

    # ------------------------------------------------------------ the port, without a client

    def fee_rate(self, symbol: Symbol) -> Decimal:
        """The paper fee rate; a client's own is `(await for_client(id)).fee_rate(symbol)`."""
        return self.paper.fee_rate(symbol)

    def _unrouted(self) -> ExchangeError:
        # An order needs an account: a caller that did not resolve the client is a bug, not a paper trade.
        return PermanentExchangeError("An order was sent without its client's account (use for_client).")

    async def market_buy(
        self,
        symbol: Symbol,
        client_order_id: str,
        *,
        quote_amount: Decimal | None = None,
        quantity: Decimal | None = None,
    ) -> Execution:
        raise self._unrouted()

    async def market_sell(self, symbol: Symbol, client_order_id: str, quantity: Decimal) -> Execution:
        raise self._unrouted()

    async def limit_sell(
        self, symbol: Symbol, client_order_id: str, quantity: Decimal, price: Decimal, time_in_force: TimeInForce
    ) -> Execution:
        raise self._unrouted()

    async def cancel_order(self, symbol: Symbol, client_order_id: str) -> Execution | None:
        raise self._unrouted()

    async def get_order(self, symbol: Symbol, client_order_id: str) -> Execution | None:
        raise self._unrouted()
