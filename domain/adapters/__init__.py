"""Adapters of the domain's ports: SQLAlchemy persistence, the paper exchange, price sources."""
