"""The client's own exchange account: set or clear its Binance API key and secret (issue 4).

The secret goes in and never comes out: it is stored encrypted, no field returns it (only a hint of
the key), and the audit log redacts it.
"""

from __future__ import annotations

from typing import Annotated

import strawberry

from domain import commands as cmds
from domain.services import exchange_keys
from gql_api.audit import Audited
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated


@strawberry.type(
    description="The exchange account the client trades on. The secret is never returned, only a hint of the key."
)
class ExchangeAccount:
    client_id: strawberry.ID = strawberry.field(description="The client.")
    trades_on: str = strawberry.field(
        description='"binance" (live), "binance-testnet", or "paper" (no keys, or the server runs EXCHANGE=paper).'
    )
    has_keys: bool = strawberry.field(description="Whether exchange keys are stored for the client.")
    api_key_hint: str | None = strawberry.field(description="The stored API key's last four characters, masked.")

    @classmethod
    def from_domain(cls, info: Info, keys: exchange_keys.ExchangeKeys) -> ExchangeAccount:
        settings = info.context.app.settings
        trades_on = "paper"
        if keys.has_keys and settings.exchange == "binance":
            trades_on = "binance-testnet" if settings.binance_testnet else "binance"
        return cls(
            client_id=strawberry.ID(str(keys.client_id)),
            trades_on=trades_on,
            has_keys=keys.has_keys,
            api_key_hint=keys.api_key_hint,
        )


def _client_id(info: Info) -> int:
    assert info.context.client_id is not None  # IsAuthenticated
    return info.context.client_id


@strawberry.type
class ExchangeMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Trade on your own Binance account: store its API key and secret (the secret encrypted; it is "
        "never returned). Use a key with spot trading only, no withdrawals, restricted to the server's IP. Only "
        "while you hold no open or scheduled position (INVALID_STATE otherwise).",
    )
    async def set_exchange_keys(
        self,
        info: Info,
        api_key: Annotated[str, strawberry.argument(description="The Binance API key.")],
        api_secret: Annotated[str, strawberry.argument(description="The Binance API secret (stored encrypted).")],
    ) -> ExchangeAccount:
        cmd = cmds.SetExchangeKeys(_client_id(info), api_key, api_secret)
        keys = await exchange_keys.set_exchange_keys(cmd, info.context.app.uow(), info.context.app.secret_box)
        return ExchangeAccount.from_domain(info, keys)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Forget your exchange keys: you trade on paper again. Only while you hold no open or scheduled "
        "position.",
    )
    async def clear_exchange_keys(self, info: Info) -> ExchangeAccount:
        cmd = cmds.ClearExchangeKeys(_client_id(info))
        return ExchangeAccount.from_domain(info, await exchange_keys.clear_exchange_keys(cmd, info.context.app.uow()))
