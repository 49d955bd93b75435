"""Mutations, one module per family. Each: input -> command -> service -> `Type.from_domain`."""
