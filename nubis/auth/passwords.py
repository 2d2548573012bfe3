"""Passwords, stored only as argon2id hashes."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from nubis.errors import InvalidInput

MIN_LENGTH = 10
MAX_LENGTH = 1024

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@cache
def _dummy() -> str:
    """Verified when the account does not exist, so a failed login takes as long either
    way and its timing does not tell which emails have accounts."""
    return _hasher.hash("not a password of anyone")


def check_strength(password: str) -> str:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidInput(
            f"a password needs {MIN_LENGTH} to {MAX_LENGTH} characters",
            errors={"password": f"{MIN_LENGTH} to {MAX_LENGTH} characters"},
        )
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`; with no stored hash, False after the same work."""
    try:
        return _hasher.verify(stored or _dummy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)
