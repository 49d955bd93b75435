"""Criptoren's domain: the channel rules (SPEC §4) and the services that apply them.

Nothing here imports GraphQL, HTTP, arq or Redis; SQLAlchemy appears only in `domain.adapters`.
"""
