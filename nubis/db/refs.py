"""Finding a row by what a user typed: its public id, or else its name."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false
from sqlalchemy.orm import InstrumentedAttribute

from nubis.errors import InvalidInput
from nubis.ids import Kind, looks_like_id, parse_id


def ref_clause(
    kind: Kind,
    id_column: InstrumentedAttribute[Any],
    name_column: InstrumentedAttribute[str],
    ref: str,
) -> ColumnElement[bool]:
    """The condition matching what `ref` names: an id of `kind`, or else a name."""
    if looks_like_id(kind, ref):
        try:
            return id_column == parse_id(kind, ref)
        except InvalidInput:
            return false()
    return name_column == ref
