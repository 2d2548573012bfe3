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
MAX_DURATION = timedelta(days=36500)
"""The longest duration read: about a century, far below what a timedelta (and a time
that far from now) can hold."""


def parse_duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"{text!r} is not a duration: use {DURATION_RULE}")
    seconds = int(match[1]) * _SECONDS[match[2]]
    if seconds <= 0:
        raise InvalidInput(f"{text!r} is not a duration: it must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidInput(f"{text!r} is too long: a duration is at most {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)


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
MAX_SIZE = 2**63 - 1
"""The largest size read: what a 64-bit signed integer (every store's, and QEMU's)
holds."""


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
    if value > MAX_SIZE:
        raise InvalidInput(f"{text!r} is too large: a size is at most {MAX_SIZE} bytes")
    return value


def format_size(value: int) -> str:
    """`value` bytes in the largest binary unit that gives a whole number: `128MiB`."""
    for unit, power in sorted(_POWER.items(), key=lambda item: -item[1]):
        if value and value % 1024**power == 0:
            return f"{value // 1024**power}{unit}iB"
    return f"{value}B"


def _size(text: str) -> str:
    try:
        parse_size(text)
    except InvalidInput as error:
        raise ValueError(error.detail) from None
    return text


Size = Annotated[str, Field(max_length=20, examples=["4G"]), AfterValidator(_size)]
"""A size field in a request body, kept as text; `parse_size` reads it."""
