"""Client API secrets at rest and in logs (SPEC §3, issue 4): encrypted with a key derived from
CRIPTOREN_SECRET_KEY, never shown in a log line."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet

from domain.adapters.config import Settings
from domain.adapters.exchanges.binance import BinanceExchange
from domain.adapters.exchanges.secrets import (
    MASK,
    RedactingFilter,
    SecretBox,
    SecretDecryptionError,
    SecretKeyMissing,
    derive_fernet_key,
    redact,
)
from domain.model import TimeInForce
from tests.binance_local import LocalBinance, local_config, next_update

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance

SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def test_an_encrypted_secret_never_equals_or_contains_the_plain_one() -> None:
    box = SecretBox("a long random server key")
    token = box.encrypt(SECRET)
    assert token != SECRET and SECRET not in token
    assert box.encrypt(SECRET) != token  # a fresh IV each time
    assert box.decrypt(token) == SECRET
    assert "server key" not in repr(box)


def test_another_key_or_a_tampered_token_does_not_decrypt() -> None:
    token = SecretBox("key one").encrypt(SECRET)
    with pytest.raises(SecretDecryptionError) as wrong:
        SecretBox("key two").decrypt(token)
    assert SECRET not in str(wrong.value) and token not in str(wrong.value)
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(SecretDecryptionError):
        SecretBox("key one").decrypt(tampered)
    with pytest.raises(SecretDecryptionError):
        SecretBox("key one").decrypt("not a token")


def test_key_derivation_and_rotation() -> None:
    key = derive_fernet_key("any text at all")
    assert key == derive_fernet_key("any text at all") and len(key) == 44
    Fernet(key)  # a valid Fernet key
    assert derive_fernet_key("any text at all!") != key
    old_token = SecretBox("old key").encrypt(SECRET)
    rotating = SecretBox("new key", "old key")
    assert rotating.decrypt(old_token) == SECRET
    new_token = rotating.rotate(old_token)
    assert SecretBox("new key").decrypt(new_token) == SECRET


def test_the_key_comes_from_the_settings() -> None:
    with pytest.raises(SecretKeyMissing):
        SecretBox.from_settings(Settings(criptoren_secret_key=None))
    with pytest.raises(SecretKeyMissing):
        derive_fernet_key("")
    box = SecretBox.from_settings(Settings(criptoren_secret_key="from the environment"))
    assert SecretBox("from the environment").decrypt(box.encrypt(SECRET)) == SECRET


def test_redact_hides_the_secret() -> None:
    assert redact(SECRET) == MASK
    assert all(SECRET[i : i + 4] not in redact(SECRET) for i in range(len(SECRET) - 3))
    assert redact(None) == redact("") == "<empty>"
    api_key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    assert redact(api_key, show=4) == MASK + api_key[-4:]  # enough to tell keys apart
    assert redact("short", show=4) == MASK


def test_redacting_filter_masks_secrets_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("criptoren.test.redaction")
    redacting = RedactingFilter(SECRET)
    logger.addFilter(redacting)
    try:
        with caplog.at_level(logging.INFO, logger="criptoren.test.redaction"):
            logger.info("client secret is %s", SECRET)
    finally:
        logger.removeFilter(redacting)
    assert SECRET not in caplog.text and MASK in caplog.text


async def test_a_full_adapter_cycle_never_logs_the_secret(
    local_binance: LocalBinance, caplog: pytest.LogCaptureFixture
) -> None:
    binance = local_binance
    caplog.set_level(logging.DEBUG)
    adapter = BinanceExchange(local_config(binance))
    await adapter.start()
    try:
        assert await adapter.wait_for_user_stream(5)
        btc = binance.domain_symbol("BTCUSDT")
        await adapter.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400))
        await adapter.limit_sell(btc, "cr-s1-1", Decimal("0.00399"), Decimal(101000), TimeInForce.GTC)
        await binance.set_price("BTCUSDT", Decimal(101000))
        await next_update(adapter)
    finally:
        await adapter.close()
    assert caplog.records
    assert binance.api_secret not in caplog.text
    assert binance.api_key not in caplog.text  # only its last characters, masked
