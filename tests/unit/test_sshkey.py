"""OpenSSH public keys: parsed, normalized, fingerprinted as ssh-keygen does."""

from __future__ import annotations

import pytest

from nubis.errors import InvalidInput
from nubis.sshkey import parse

# `ssh-keygen -lf` printed this fingerprint for this key.
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILzBjTientSi8txdCYx9B4IlJASwI75+3nsZG3wAFPvp root@vm"
FINGERPRINT = "SHA256:rm9QislJ+ZjY2DGWK944q1zry+alqD6l719cwt5n37U"


def test_the_fingerprint_is_the_one_ssh_keygen_prints() -> None:
    assert parse(KEY).fingerprint == FINGERPRINT


def test_surrounding_space_is_normalized_and_the_comment_kept() -> None:
    assert parse(f"\n  {KEY.replace(' ', '   ', 1)}  \n").line == KEY


def test_a_key_without_a_comment_is_fine() -> None:
    assert parse(KEY.rsplit(" ", 1)[0]).line == KEY.rsplit(" ", 1)[0]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssh-ed25519",
        KEY.replace("AAAAC3", "BBBBC3"),
        "ssh-rsa " + KEY.split()[1],
        'command="x" ' + KEY,
    ],
)
def test_a_bad_key_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse(text)
    assert refused.value.errors["public_key"]
