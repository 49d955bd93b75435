"""Persistence: SQLAlchemy tables and imperative mapping, repositories, the unit of work, the
in-memory store of backtests and unit tests, migrations."""
