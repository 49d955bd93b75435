"""The emergency stop: pause and resume a client's trading (`domain.services.trading_pause`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from domain import commands as cmds
from domain.errors import NotFound
from domain.services import trading_pause
from gql_api.audit import Audited
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated
from gql_api.queries import OwnClient, own_client


@strawberry.type(description="A client's trading state: paused or not, and what a pause just cancelled.")
class TradingStatus:
    client_id: strawberry.ID = strawberry.field(description="The client.")
    paused: bool = strawberry.field(description="True while trading is paused: no new entries, manual buys refused.")
    paused_at: datetime | None = strawberry.field(description="When the pause began (UTC); null when not paused.")
    sells_held: bool = strawberry.field(
        description="True when the pause also holds automatic sells (exits, channel-break schedules): it was "
        "made with cancelScheduled."
    )
    cancelled_schedules: list[strawberry.ID] = strawberry.field(
        description="Positions whose scheduled sell this pause cancelled (they are open again)."
    )
    not_cancelled: list[strawberry.ID] = strawberry.field(
        description="Scheduled positions this pause could not cancel (sold meanwhile, or the exchange did not "
        "answer: pause again to retry)."
    )

    @classmethod
    def from_domain(cls, s: trading_pause.TradingStatus) -> TradingStatus:
        return cls(
            client_id=strawberry.ID(str(s.client_id)),
            paused=s.paused,
            paused_at=s.paused_at,
            sells_held=s.sells_held,
            cancelled_schedules=[strawberry.ID(str(i)) for i in s.cancelled_schedules],
            not_cancelled=[strawberry.ID(str(i)) for i in s.not_cancelled],
        )


def _own(info: Info, client_id: strawberry.ID | None) -> int:
    requested = own_client(info, client_id)
    if requested != info.context.client_id:
        raise NotFound(f"Client {requested} not found.", entity="Client", id=requested)
    return requested


@strawberry.type
class TradingMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Emergency stop: no new entries for the client from now on (entries are skipped with the reason "
        "trading_paused, manual buys are refused with INVALID_STATE). Exits and scheduled sells go on — unless "
        "cancelScheduled is true: then every scheduled sell is cancelled (its resting order too) and automatic "
        "exits are held until resumeTrading. Returns once decisions in flight are committed.",
    )
    async def pause_trading(
        self,
        info: Info,
        client_id: OwnClient = None,
        cancel_scheduled: Annotated[
            bool,
            strawberry.argument(description="Also cancel the scheduled sells and hold automatic exits."),
        ] = False,
    ) -> TradingStatus:
        app = info.context.app
        cmd = cmds.PauseTrading(_own(info, client_id), cancel_scheduled)
        return TradingStatus.from_domain(await trading_pause.pause_trading(cmd, app.uow, app.exchange))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="End the pause: entries resume from the next bounce off each strategy's base; held exits work "
        "again. Cancelled scheduled sells are not restored.",
    )
    async def resume_trading(self, info: Info, client_id: OwnClient = None) -> TradingStatus:
        cmd = cmds.ResumeTrading(_own(info, client_id))
        return TradingStatus.from_domain(await trading_pause.resume_trading(cmd, info.context.app.uow))
