"""Secrets sealed at rest with a key kept in the data dir."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from nubis.errors import NubisError
from nubis.secretbox import SecretBox


def test_a_sealed_secret_opens_with_the_same_key(tmp_path: Path) -> None:
    box = SecretBox.from_file(tmp_path / "secret.key")
    sealed = box.seal(b"JBSWY3DPEHPK3PXP")
    assert b"JBSWY3DPEHPK3PXP" not in sealed
    assert SecretBox.from_file(tmp_path / "secret.key").open(sealed) == b"JBSWY3DPEHPK3PXP"


def test_the_key_file_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "secret.key"
    SecretBox.from_file(path)
    first = path.read_bytes()
    SecretBox.from_file(path)
    assert path.read_bytes() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_another_key_cannot_open_a_secret(tmp_path: Path) -> None:
    sealed = SecretBox.from_file(tmp_path / "a.key").seal(b"x")
    with pytest.raises(NubisError, match=r"secret\.key"):
        SecretBox.from_file(tmp_path / "b.key").open(sealed)


def test_a_digest_is_the_same_for_the_same_data_and_key_only(tmp_path: Path) -> None:
    box = SecretBox.from_file(tmp_path / "a.key")
    other = SecretBox.from_file(tmp_path / "b.key")
    data = b'{"password": "correct horse battery"}'

    assert box.digest(data) == SecretBox.from_file(tmp_path / "a.key").digest(data)
    assert box.digest(data) != box.digest(data + b" ")
    assert box.digest(data) != other.digest(data)
    assert box.digest(data) != hashlib.sha256(data).hexdigest()
    assert len(box.digest(data)) == 64
