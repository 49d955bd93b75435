"""The server's secret key (`CRIPTOREN_SECRET_KEY`) and the keys derived from it.

In production the key must be set. In development without one, a random key is generated once and
kept in `CRIPTOREN_DATA_DIR/secret_key` (mode 0600), so access tokens survive restarts. Each use
gets a key of its own, derived with HKDF (a token signing key never equals an encryption key).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domain.adapters.config import Settings

log = logging.getLogger(__name__)

KEY_FILE = "secret_key"


class MissingSecretKey(RuntimeError):
    pass


def _read_or_create(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48) + "\n")
    try:
        # link() fails when another process created the file first: then its key wins.
        os.link(tmp, path)
        log.warning("CRIPTOREN_SECRET_KEY is not set: generated a development key in %s", path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def secret_key(settings: Settings) -> str:
    """`CRIPTOREN_SECRET_KEY`, else (dev only) the key kept under `CRIPTOREN_DATA_DIR`."""
    if settings.criptoren_secret_key:
        return settings.criptoren_secret_key
    if settings.is_prod:
        raise MissingSecretKey("CRIPTOREN_SECRET_KEY must be set when CRIPTOREN_ENV=prod.")
    return _read_or_create(settings.criptoren_data_dir / KEY_FILE)


def derive_key(secret: str, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose (e.g. "access-token"), derived from the server's secret with HKDF-SHA256."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=f"criptoren {purpose}".encode())
    return hkdf.derive(secret.encode())
