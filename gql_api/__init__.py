"""Criptoren's GraphQL API (Strawberry on Starlette)."""
