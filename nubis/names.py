"""Names people give things: users, projects, and every resource in a project."""

from __future__ import annotations

import re

from nubis.errors import InvalidInput
from nubis.ids import Kind, looks_like_id

_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)*")

NAME_RULE = (
    "1-32 characters of lowercase letters, digits, '-' and '_', not starting with a digit or '-'"
)


def name_problem(text: str) -> str | None:
    """What is wrong with `text` as a name; None if nothing is."""
    if not _NAME.fullmatch(text):
        return f"use {NAME_RULE}"
    if any(looks_like_id(kind, text) for kind in Kind):
        return "a name may not look like an id"
    return None


def check_name(text: str, what: str = "name") -> str:
    """`text` if it is a valid name, else InvalidInput saying why."""
    problem = name_problem(text)
    if problem is not None:
        raise InvalidInput(f"{what} {text!r} is not valid: {problem}", errors={what: problem})
    return text


def check_email(text: str) -> str:
    """The address, lowercased, if it looks like one (the mail server has the last word)."""
    address = text.strip().lower()
    if len(address) > 254 or not _EMAIL.fullmatch(address):
        raise InvalidInput(f"{text!r} is not an email address", errors={"email": "not an address"})
    return address
