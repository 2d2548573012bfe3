"""Quantities people type with a unit, parsed strictly: a wrong or missing unit is an error,
never a guess.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field

from nubis.errors import InvalidInput

_DURATION = re.compile(r"(\d{1,9})([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_RULE = "a whole number with a unit: s, m, h, d or w (e.g. 90m, 12h, 30d)"


def parse_duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"{text!r} is not a duration: use {DURATION_RULE}")
    value = timedelta(seconds=int(match[1]) * _SECONDS[match[2]])
    if value <= timedelta(0):
        raise InvalidInput(f"{text!r} is not a duration: it must be longer than zero")
    return value


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except InvalidInput as error:
        raise ValueError(error.detail) from None
    return text


Duration = Annotated[str, Field(max_length=12, examples=["30d"]), AfterValidator(_duration)]
"""A duration field in a request body, kept as text; `parse_duration` reads it."""
