"""Names people give things: users, projects, and every resource in a project."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator
from sqlalchemy import ColumnElement, false
from sqlalchemy.orm import InstrumentedAttribute

from nubis.errors import InvalidInput
from nubis.ids import Kind, looks_like_id, parse_id

_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)*")

NAME_RULE = (
    "1-32 characters of lowercase letters, digits, '-' and '_', not starting with a digit or '-'"
)


def _problem(text: str) -> str | None:
    if not _NAME.fullmatch(text):
        return f"use {NAME_RULE}"
    if any(looks_like_id(kind, text) for kind in Kind):
        return "a name may not look like an id"
    return None


def check_name(text: str, what: str = "name") -> str:
    """`text` if it is a valid name, else InvalidInput saying why."""
    problem = _problem(text)
    if problem is not None:
        raise InvalidInput(f"{what} {text!r} is not valid: {problem}", errors={what: problem})
    return text


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


def check_email(text: str) -> str:
    """The address, lowercased, if it looks like one (the mail server has the last word)."""
    address = text.strip().lower()
    if len(address) > 254 or not _EMAIL.fullmatch(address):
        raise InvalidInput(f"{text!r} is not an email address", errors={"email": "not an address"})
    return address


def _name(text: str) -> str:
    problem = _problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def _email(text: str) -> str:
    try:
        return check_email(text)
    except InvalidInput as error:
        raise ValueError(error.detail) from None


Name = Annotated[str, AfterValidator(_name)]
"""A name field in a request body."""
Email = Annotated[str, AfterValidator(_email)]
