"""Ids that log lines carry without every call passing them: the strategy, position and client order
id a decision is about. Set with `log_fields(...)` around the work; the log formatter
(`domain.adapters.ops.logs`) adds them to every line logged meanwhile, in that task only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_FIELDS: ContextVar[dict[str, object]] = ContextVar("criptoren_log_fields", default={})  # noqa: B039 - never mutated


@contextmanager
def log_fields(**fields: object) -> Iterator[None]:
    """Add `fields` (None values skipped) to the log lines of the enclosed code."""
    token = _FIELDS.set({**_FIELDS.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _FIELDS.reset(token)


def current_fields() -> dict[str, object]:
    return _FIELDS.get()
