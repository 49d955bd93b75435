"""The EventPublisher port's adapter: events on Redis pub/sub."""
