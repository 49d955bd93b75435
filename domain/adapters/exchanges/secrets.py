"""Client API secrets at rest (SPEC §3: stored encrypted, never in plain text, never returned).

Encryption: Fernet (the `cryptography` package) — AES-128-CBC with a random IV, authenticated with
HMAC-SHA256; a token that was altered, or made under another key, does not decrypt. Each encryption
of the same secret gives a different token.

Key: `CRIPTOREN_SECRET_KEY` may be any text. The Fernet key is derived from it with HKDF-SHA256
(RFC 5869): 32 bytes from the key's UTF-8 bytes, salt `criptoren.secrets`, info `fernet/v1`, then
URL-safe base64 (the form Fernet takes). HKDF stretches nothing: use a long random value, e.g.
`python -c "import secrets; print(secrets.token_urlsafe(32))"`, not a memorable password. Losing the
key makes the stored secrets unreadable (the clients then enter their keys again).

Rotation: `SecretBox(new_key, old_key, ...)` decrypts tokens made under any of the keys and encrypts
under the first; `rotate(token)` re-encrypts a stored token under the new key.

Logs: `redact()` gives what a log line may show of a secret, `RedactingFilter` masks given secrets in
every record of a logger.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from domain.adapters.config import Settings

SALT = b"criptoren.secrets"
INFO = b"fernet/v1"
MASK = "********"


class SecretKeyMissing(RuntimeError):
    """No `CRIPTOREN_SECRET_KEY`: client secrets cannot be stored or read."""


class SecretDecryptionError(ValueError):
    """A stored token does not decrypt under the configured key(s): altered, or another key."""


def derive_fernet_key(secret_key: str) -> bytes:
    """The Fernet key for a `CRIPTOREN_SECRET_KEY` (HKDF-SHA256, see the module docstring)."""
    if not secret_key:
        raise SecretKeyMissing("CRIPTOREN_SECRET_KEY is empty.")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=INFO).derive(secret_key.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


class SecretBox:
    """Encrypts and decrypts client API secrets with keys derived from `CRIPTOREN_SECRET_KEY`."""

    def __init__(self, secret_key: str, *previous_keys: str) -> None:
        self._fernet = MultiFernet([Fernet(derive_fernet_key(k)) for k in (secret_key, *previous_keys)])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if not settings.criptoren_secret_key:
            raise SecretKeyMissing(
                "Set CRIPTOREN_SECRET_KEY to store client Binance keys (they are kept encrypted with it)."
            )
        return cls(settings.criptoren_secret_key)

    def __repr__(self) -> str:
        return "SecretBox(<keys hidden>)"

    def encrypt(self, plain: str) -> str:
        """A Fernet token (ASCII) for the secret."""
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise SecretDecryptionError(
                "A stored secret could not be decrypted: it was altered or made under another key."
            ) from None

    def rotate(self, token: str) -> str:
        """The token re-encrypted under the first (newest) key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, ValueError):
            raise SecretDecryptionError("A stored secret could not be re-encrypted: it does not decrypt.") from None


def redact(value: str | None, *, show: int = 0) -> str:
    """What a log line may show of a secret: a fixed mask; with `show`, also its last `show`
    characters (for identifying an API key, never for a secret) when it is long enough that they
    reveal little."""
    if not value:
        return "<empty>"
    if show <= 0 or len(value) < 4 * show:
        return MASK
    return MASK + value[-show:]


class RedactingFilter(logging.Filter):
    """A logging filter that replaces each given secret in a record's message by the mask."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = message
        for secret in self._secrets:
            masked = masked.replace(secret, MASK)
        if masked != message:
            record.msg, record.args = masked, None
        return True
