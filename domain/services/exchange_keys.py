"""A client's own exchange account (SPEC §3, §8; issue 4): the Binance API key and secret it trades
with. A client without them trades on paper.

The secret is stored encrypted (`SecretCipher`: Fernet under a key derived from
CRIPTOREN_SECRET_KEY) and never leaves the server: no use case returns it, and errors never quote
it. The API key is an identifier Binance receives in clear in every request header; it is stored as
is and shown only as a hint (its last four characters).

Keys change only while the client holds no open or scheduled position: a position bought on one
account (paper, or a Binance account) cannot be sold on another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain import commands as cmds
from domain.errors import InvalidState, NotFound, ValidationError
from domain.model import Client, PositionStatus
from domain.ports import Page, SecretCipher, UnitOfWork

# Binance API keys and secrets are 64 letters and digits; other hosts (the tests' local Binance)
# use dashes too. Anything else is a paste error, refused without echoing the value.
KEY_FORMAT = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


@dataclass(frozen=True)
class ExchangeKeys:
    """What may be shown of a client's exchange account: whether it has keys, and a hint of the key."""

    client_id: int
    has_keys: bool
    api_key_hint: str | None


def key_hint(api_key: str) -> str:
    """The last four characters of an API key, masked (enough to tell two keys apart)."""
    return "********" + api_key[-4:]


def _view(client: Client) -> ExchangeKeys:
    assert client.id is not None
    key = client.binance_api_key
    has_keys = bool(key and client.binance_api_secret_encrypted)
    return ExchangeKeys(client.id, has_keys, key_hint(key) if key and has_keys else None)


async def _client_without_positions(uow: UnitOfWork, client_id: int) -> Client:
    client = await uow.clients.get(client_id)
    if client is None:
        raise NotFound(f"Client {client_id} not found.", entity="Client", id=client_id)
    for status in (PositionStatus.OPEN, PositionStatus.SCHEDULED):
        if await uow.positions.list(Page(1), client_id=client_id, status=status):
            raise InvalidState(
                "Exchange keys can change only while the client holds no open or scheduled position: a position "
                "bought on one account cannot be sold on another. Sell or cancel them first.",
                status=status.value,
            )
    return client


async def set_exchange_keys(cmd: cmds.SetExchangeKeys, uow: UnitOfWork, cipher: SecretCipher | None) -> ExchangeKeys:
    """Store the client's Binance API key and its secret, encrypted. From then on the client's orders
    go to Binance (with EXCHANGE=binance), within seconds."""
    api_key, api_secret = cmd.api_key.strip(), cmd.api_secret.strip()
    if not KEY_FORMAT.match(api_key):
        raise ValidationError("apiKey must be 16 to 128 letters, digits, '-' or '_'.", field="apiKey")
    if not KEY_FORMAT.match(api_secret):
        raise ValidationError("apiSecret must be 16 to 128 letters, digits, '-' or '_'.", field="apiSecret")
    if api_secret == api_key:
        raise ValidationError("apiSecret must differ from apiKey.", field="apiSecret")
    if cipher is None:
        raise InvalidState(
            "The server has no CRIPTOREN_SECRET_KEY, so it cannot store exchange secrets encrypted: set it first."
        )
    encrypted = cipher.encrypt(api_secret)
    async with uow:
        client = await _client_without_positions(uow, cmd.client_id)
        client.binance_api_key, client.binance_api_secret_encrypted = api_key, encrypted
        await uow.commit()
    return _view(client)


async def clear_exchange_keys(cmd: cmds.ClearExchangeKeys, uow: UnitOfWork) -> ExchangeKeys:
    """Forget the client's exchange keys: it trades on paper again."""
    async with uow:
        client = await _client_without_positions(uow, cmd.client_id)
        client.binance_api_key = client.binance_api_secret_encrypted = None
        await uow.commit()
    return _view(client)


async def exchange_keys(uow: UnitOfWork, client_id: int) -> ExchangeKeys:
    async with uow:
        client = await uow.clients.get(client_id)
    if client is None:
        raise NotFound(f"Client {client_id} not found.", entity="Client", id=client_id)
    return _view(client)
