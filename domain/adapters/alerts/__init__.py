"""Alert delivery over HTTP (the `AlertTransport` port): signed webhooks and Telegram's Bot API."""

from domain.adapters.alerts.transport import HttpAlertTransport, sign

__all__ = ["HttpAlertTransport", "sign"]
