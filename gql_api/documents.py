"""Parse and check each distinct GraphQL document once, not once per request.

A dashboard sends the same few documents over and over; parsing one, validating it against the
schema and walking it for the abuse limits costs more than resolving a small page. `DocumentCache`
keeps, per query text (an LRU of `CACHE_SIZE` texts of at most `MAX_CACHED_CHARS` characters):

- the parsed document — parsed with the token limit (`max_tokens`), so a text over it never
  parses and is never cached: it is refused in full every time;
- what the guards need to know of it (gql_api/hardening.py): whether it holds an empty selection
  set, and the first string literal they refuse;
- its validation errors per schema and set of rules — the rules (the depth and alias limits among
  them) are part of the key, so a document is validated in full the first time it meets a set of
  rules, and its errors are answered again, unchanged, every time after.

Nothing is weakened: the cache only remembers what the full check answered for the very same text.
Variables are checked on every request (they are not part of the key).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    SelectionSetNode,
    StringValueNode,
    Visitor,
    parse,
    visit,
)
from strawberry.schema.schema import validate_document

CACHE_SIZE = 128
# Longer texts are checked in full every time (they are rare, and bounded by the token limit).
MAX_CACHED_CHARS = 10_000

Rules = tuple[type[ASTValidationRule], ...]


@dataclass
class Checked:
    """A parsed document and what the checks found in it."""

    document: DocumentNode
    has_empty_selection_set: bool
    strings: tuple[str, ...]  # its string literals (the guards refuse some of them)
    _errors: dict[tuple[GraphQLSchema, Rules], list[GraphQLError]] = field(default_factory=dict)

    @classmethod
    def of(cls, document: DocumentNode) -> Checked:
        return cls(document, *_inspect(document))

    def validate(self, schema: GraphQLSchema, rules: Rules) -> list[GraphQLError]:
        """The validation errors of the document against `schema` under `rules` (a new list each time)."""
        errors = self._errors.get((schema, rules))
        if errors is None:
            errors = self._errors[schema, rules] = validate_document(schema, self.document, rules)
        return list(errors)

    def validations(self) -> list[list[GraphQLError]]:
        """The validations kept: their errors, one list per schema and set of rules."""
        return list(self._errors.values())


def _inspect(document: DocumentNode) -> tuple[bool, tuple[str, ...]]:
    empty = False
    strings: list[str] = []

    class Finder(Visitor):
        def enter_selection_set(self, node: SelectionSetNode, *_: Any) -> None:
            nonlocal empty
            empty = empty or not node.selections

        def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
            strings.append(node.value)

    visit(document, Finder())
    return empty, tuple(strings)


class DocumentCache:
    def __init__(self, max_tokens: int, size: int = CACHE_SIZE, max_chars: int = MAX_CACHED_CHARS) -> None:
        self.max_tokens = max_tokens
        self.size = size
        self.max_chars = max_chars
        self._entries: OrderedDict[str, Checked] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, query: object) -> bool:
        return query in self._entries

    def check(self, query: str) -> Checked:
        """The document of `query`, parsed under the token limit. Raises `GraphQLError` for a text
        that does not parse (over the token limit, a syntax error): such texts are not kept."""
        found = self._entries.get(query)
        if found is not None:
            self._entries.move_to_end(query)
            return found
        document = parse(query, max_tokens=self.max_tokens)
        checked = Checked.of(document)
        if len(query) <= self.max_chars:
            self._entries[query] = checked
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return checked
