"""The emergency stop: pause a client's trading at once, resume it later (issue 7).

The pause is data — `Client.trading_paused_at` (and `trading_sells_held`) — so every API instance
and worker honours it from the next decision on, and it survives restarts:

- paused: the engine skips every entry of the client's strategies (a `entry_skipped` event with the
  reason "trading_paused"; the skip disarms the strategy like any skipped entry, so after the pause
  it enters again on the next bounce off the base), and manual buys are refused (INVALID_STATE).
  Exits and scheduled sells go on: they never sell below a position's minimum sell price.
- paused with `cancel_scheduled`: the client's scheduled sells are cancelled too (their resting
  orders on Binance included; the positions are open again), and the engine holds the client's
  automatic sells — exits (rule 4) and the schedules of a channel break (rule 5) — until trading
  resumes. Manual sells still work.

The engine reads the pause in the statement that locks the strategies of a decision (no extra round
trip). Once the pause is committed, `pause_trading` takes the client's strategy locks in turn, so it
returns only after the decisions already in flight — which may have read the state before the pause —
have committed: after it returns, no entry happens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from domain import commands as cmds
from domain.errors import DomainError, NotFound
from domain.events import EventType
from domain.model import Client, PositionStatus
from domain.ports import Exchange, Page, UnitOfWork, UnitOfWorkFactory
from domain.services.common import record_event
from domain.services.orders import cancel_scheduled_sell

log = logging.getLogger("criptoren.pause")

PAGE = 500


@dataclass(frozen=True)
class TradingStatus:
    """A client's trading state, and what a pause just did."""

    client_id: int
    paused_at: datetime | None
    sells_held: bool
    cancelled_schedules: tuple[int, ...] = field(default=())  # positions whose scheduled sell was cancelled
    # Scheduled sells that could not be cancelled (sold meanwhile, exchange unreachable): id -> why.
    not_cancelled: dict[int, str] = field(default_factory=dict)

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


def _status(client: Client) -> TradingStatus:
    assert client.id is not None
    return TradingStatus(client.id, client.trading_paused_at, client.trading_sells_held)


async def _client(uow: UnitOfWork, client_id: int) -> Client:
    client = await uow.clients.get(client_id)
    if client is None:
        raise NotFound(f"Client {client_id} not found.", entity="Client", id=client_id)
    return client


async def trading_status(client_id: int, uow: UnitOfWork) -> TradingStatus:
    async with uow:
        return _status(await _client(uow, client_id))


async def pause_trading(cmd: cmds.PauseTrading, uow: UnitOfWorkFactory, exchange: Exchange) -> TradingStatus:
    """Stop the client's new entries now; with `cancel_scheduled`, also cancel its scheduled sells
    and hold its automatic exits. Pausing a paused client keeps the first pause's time (and may add
    `cancel_scheduled`)."""
    async with uow() as tx:
        client = await _client(tx, cmd.client_id)
        if client.trading_paused_at is None:
            client.trading_paused_at = datetime.now(UTC)
            held = " Scheduled sells are cancelled and exits held." if cmd.cancel_scheduled else ""
            await _record_on_strategies(
                tx, cmd.client_id, EventType.TRADING_PAUSED, f"Trading paused: no new entries.{held}"
            )
        client.trading_sells_held = client.trading_sells_held or cmd.cancel_scheduled
        status = _status(client)
        await tx.commit()
    await _wait_for_decisions_in_flight(uow(), cmd.client_id)
    held = " (scheduled sells cancelled, exits held)" if cmd.cancel_scheduled else ""
    log.warning("Trading paused for client %s%s.", cmd.client_id, held)
    if not cmd.cancel_scheduled:
        return status
    # The pause is committed first, so the engine schedules nothing new meanwhile. Each cancel is a
    # transaction of its own (`cancel_scheduled_sell`), its resting order cancelled on the exchange.
    cancelled: list[int] = []
    failed: dict[int, str] = {}
    for position_id in await _scheduled_positions(uow(), cmd.client_id):
        try:
            await cancel_scheduled_sell(cmds.CancelScheduledSell(position_id, cmd.client_id), uow(), exchange)
            cancelled.append(position_id)
        except DomainError as e:
            failed[position_id] = e.message
            log.warning("Scheduled sell of position %s not cancelled: %s", position_id, e.message)
    return TradingStatus(status.client_id, status.paused_at, status.sells_held, tuple(cancelled), failed)


async def _record_on_strategies(uow: UnitOfWork, client_id: int, type_: EventType, message: str) -> None:
    """The pause and the resume are events of each of the client's strategies (events belong to a
    strategy): its history and its alerts (SPEC §4b) show them."""
    before: int | None = None
    while True:
        page = await uow.strategies.list_by_client(client_id, Page(PAGE, before))
        for strategy in page:
            record_event(uow, strategy, type_, message)
        if len(page) < PAGE:
            return
        before = page[-1].id


async def _wait_for_decisions_in_flight(uow: UnitOfWork, client_id: int) -> None:
    """Take (and release) each of the client's strategy locks, in id order like the engine: a
    decision holding one finishes first."""
    async with uow:
        ids: list[int] = []
        before: int | None = None
        while True:
            page = await uow.strategies.list_by_client(client_id, Page(PAGE, before))
            ids += [s.id for s in page if s.id is not None]
            if len(page) < PAGE:
                break
            before = page[-1].id
        for strategy_id in sorted(ids):
            await uow.strategies.get(strategy_id, for_update=True)


async def _scheduled_positions(uow: UnitOfWork, client_id: int) -> list[int]:
    ids: list[int] = []
    before: int | None = None
    async with uow:
        while True:
            page = await uow.positions.list(Page(PAGE, before), client_id=client_id, status=PositionStatus.SCHEDULED)
            ids += [p.id for p in page if p.id is not None]
            if len(page) < PAGE:
                return ids
            before = page[-1].id


async def resume_trading(cmd: cmds.ResumeTrading, uow: UnitOfWorkFactory) -> TradingStatus:
    """End the client's pause: entries happen again from the next bounce off the base (a strategy
    whose entry was skipped re-arms when the price touches its base), exits are no longer held.
    Cancelled scheduled sells are not restored: schedule them again if you want them."""
    async with uow() as tx:
        client = await _client(tx, cmd.client_id)
        was_paused = client.trading_paused_at is not None
        if was_paused:
            await _record_on_strategies(tx, cmd.client_id, EventType.TRADING_RESUMED, "Trading resumed.")
        client.trading_paused_at = None
        client.trading_sells_held = False
        status = _status(client)
        await tx.commit()
    if was_paused:
        log.warning("Trading resumed for client %s.", cmd.client_id)
    return status


async def all_client_ids(uow: UnitOfWork) -> list[int]:
    async with uow:
        return list(await uow.clients.list_ids())
