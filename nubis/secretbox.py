"""Secrets at rest (TOTP seeds, later provider and tunnel keys), sealed with a key kept
outside the database, in the data dir, so a copy of the database alone reveals none.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from nubis.errors import NubisError


class SecretBox:
    """Authenticated encryption (Fernet: AES-128-CBC with HMAC-SHA256) with one key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._digest_key = hmac.digest(key, b"nubis digest", hashlib.sha256)

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """The box whose key is in `path`, made (mode 0600) on first use.

        Every API replica of one control plane must share this file.
        """
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first; use theirs
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def seal(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def digest(self, data: bytes) -> str:
        """A keyed SHA-256 (HMAC) of `data`, in hex: equal for equal data, and no help in
        guessing `data` (a password in a request body) without the key."""
        return hmac.new(self._digest_key, data, hashlib.sha256).hexdigest()

    def open(self, sealed: bytes) -> bytes:
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken:
            raise NubisError(
                "a secret cannot be opened: the data dir's secret.key is not the one it was "
                "sealed with"
            ) from None
