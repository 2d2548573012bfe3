"""Cursor pagination: pages in key order, each naming where the next one starts.

The cursor is the last key of a page, opaque to clients. Keys are UUIDv7, so key order
is creation order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Row, Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from nubis.errors import InvalidInput

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=500, description="Most items in one page.")]
Cursor = Annotated[
    str | None,
    Query(max_length=64, description="`next_cursor` of the previous page."),
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None
    """Where the next page starts; null on the last page."""


def _encode(key: UUID) -> str:
    return base64.urlsafe_b64encode(key.bytes).rstrip(b"=").decode()


def _decode(cursor: str) -> UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "the cursor is not one this API gave out", errors={"cursor": "not a cursor"}
        ) from None


def fetch_page(
    session: Session,
    query: Select[*tuple[Any, ...]],
    key: InstrumentedAttribute[UUID],
    cursor: str | None,
    limit: int,
    *,
    key_of: Callable[[Row[*tuple[Any, ...]]], UUID],
    newest_first: bool = False,
) -> tuple[list[Row[*tuple[Any, ...]]], str | None]:
    """One page of `query`'s rows in `key` order, and the cursor of the next page."""
    if cursor is not None:
        after = _decode(cursor)
        query = query.where(key < after if newest_first else key > after)
    query = query.order_by(key.desc() if newest_first else key).limit(limit + 1)
    rows = list(session.execute(query).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, _encode(key_of(rows[-1]))
