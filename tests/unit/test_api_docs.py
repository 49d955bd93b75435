"""Every type, field, argument and enum value of the API has a description (the API's docs)."""

from __future__ import annotations

from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType, GraphQLScalarType

from gql_api.schema import schema


def test_everything_is_described() -> None:
    missing = []
    for name, gtype in schema._schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Boolean", "Float", "ID"}:
            continue
        if not gtype.description:
            missing.append(name)
        if isinstance(gtype, GraphQLObjectType | GraphQLInputObjectType):
            for field_name, field in gtype.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")
        if isinstance(gtype, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in gtype.values.items() if not value.description]
        assert not isinstance(gtype, GraphQLScalarType) or gtype.description or name in {"DateTime"}
    assert missing == []
