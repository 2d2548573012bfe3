"""Primary keys and the public ids that name them.

Keys are UUIDv7 (time-ordered, so indexes stay compact). A public id is the key in
lowercase Crockford base32 behind a type prefix, e.g. `vm-06bq1j0pkw7v8cs3d9j1e4tm5g`,
so a pasted id says what it names and a VM id is never accepted where a project id
is expected.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

import uuid6

from nubis.errors import InvalidInput

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_LENGTH = 26  # 128 bits in 5-bit digits, rounded up


class Kind(StrEnum):
    """The prefix of each kind of public id."""

    STRAND = "st"
    USER = "usr"
    PROJECT = "prj"
    TOKEN = "tok"
    SSH_KEY = "key"
    LOCATION = "loc"
    HOST = "host"
    VM = "vm"
    NETWORK = "nw"
    FIREWALL_RULE = "fwr"
    IMAGE = "img"
    EVENT = "evt"
    INVITATION = "inv"


def new_id() -> UUID:
    """A fresh UUIDv7 key."""
    value: UUID = uuid6.uuid7()
    return UUID(bytes=value.bytes)


def format_id(kind: Kind, key: UUID) -> str:
    number = key.int
    digits = []
    for _ in range(_LENGTH):
        digits.append(_ALPHABET[number & 31])
        number >>= 5
    return f"{kind.value}-{''.join(reversed(digits))}"


def parse_id(kind: Kind, text: str) -> UUID:
    """The key named by `text`, which must be a public id of `kind`."""
    prefix, sep, body = text.strip().lower().partition("-")
    if not sep or prefix != kind.value:
        raise InvalidInput(
            f"{text!r} is not a {kind.name.lower().replace('_', ' ')} id (expected {kind.value}-…)"
        )
    if len(body) != _LENGTH or any(c not in _DECODE for c in body):
        raise InvalidInput(f"{text!r} is not a well-formed id")
    number = 0
    for c in body:
        number = number << 5 | _DECODE[c]
    if number >> 128:
        raise InvalidInput(f"{text!r} is not a well-formed id")
    return UUID(int=number)


def looks_like_id(kind: Kind, text: str) -> bool:
    """Whether `text` is shaped like an id of `kind` (so it is not taken as a name)."""
    text = text.strip().lower()
    return text.startswith(f"{kind.value}-") and len(text) == len(kind.value) + 1 + _LENGTH
