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


_SIZE = re.compile(r"(\d{1,15})([KMGT]i?B?|B)")
_POWER = {"K": 1, "M": 2, "G": 3, "T": 4}
SIZE_RULE = (
    "a whole number with a unit: B, K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) "
    "or KB, MB, GB, TB (powers of 1000), e.g. 512M, 4GiB, 20GB"
)


def parse_size(text: str) -> int:
    """Bytes. `4G` and `4GiB` are 4 * 1024**3, `4GB` is 4 * 1000**3; a bare number is refused."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"{text!r} is not a size: use {SIZE_RULE}")
    number, unit = int(match[1]), match[2]
    if unit == "B":
        value = number
    elif unit.endswith("B") and not unit.endswith("iB"):
        value = number * 1000 ** _POWER[unit[0]]
    else:
        value = number * 1024 ** _POWER[unit[0]]
    if value <= 0:
        raise InvalidInput(f"{text!r} is not a size: it must be more than zero")
    return value


def _size(text: str) -> str:
    try:
        parse_size(text)
    except InvalidInput as error:
        raise ValueError(error.detail) from None
    return text


Size = Annotated[str, Field(max_length=20, examples=["4G"]), AfterValidator(_size)]
"""A size field in a request body, kept as text; `parse_size` reads it."""
