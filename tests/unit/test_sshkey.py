"""OpenSSH public keys: parsed, normalized, fingerprinted as ssh-keygen does."""

from __future__ import annotations

import pytest

from nubis.errors import InvalidInput
from nubis.sshkey import parse

# `ssh-keygen -lf` printed this fingerprint for this key.
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILzBjTientSi8txdCYx9B4IlJASwI75+3nsZG3wAFPvp root@vm"
FINGERPRINT = "SHA256:rm9QislJ+ZjY2DGWK944q1zry+alqD6l719cwt5n37U"
# Made by `ssh-keygen -t dsa`.
DSA_KEY = (
    "ssh-dss AAAAB3NzaC1kc3MAAACBALwlCX33wKz07nbHgsssoddalmBB0Fx/"
    "ePLyRopElsaUwwYh8K4eCWVZqN/2BGLlCTHb1k6GXgVuHM6nkB0AbpK2Id/C0bCRhjkf+9n0hvFnCGa1"
    "sLzVac38b6vEAs1mLK1DutAU3Itxlcql4qnckNq5dC1Cmup/lCmL6psDuWy9AAAAFQDPUnT7k1/qbDFJ"
    "xImUGevvvmSH5wAAAIEAo5Mc8ljgx4LsRqji+jOa92towGhRmbDbhbOcP6rW5O3gyfJZTT0aC+9w4U+o"
    "fNrIueVLJ4lxXoLaaeMxmuLWATSsyYZjgKAQ+nTIrSEsGgCC3WzLyqz1djKV+XGatvTL9+zjI8+KOOac"
    "FI7ABNnw/Qtk2GASOXT21P4zG40rGkQAAACAeHn2Gj3q3K4xW5X7s96uK+UkCo+JmY0e4j2Q6UOxEjc/"
    "7qTIwxOdJKpwN0fsvxFtZowDrdXgf8Kmvqu4zraCwXGfInQp8bzzPsPpyE13CVZOfpyqSZyjJyY1PfML"
    "0+ZskvTsFhhdVZtx+AKmiQ5r23f4ujO74yBIudGM75tm4u0="
)


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


def test_a_dsa_key_is_refused_by_its_type_even_when_it_claims_another() -> None:
    with pytest.raises(InvalidInput) as named:
        parse(DSA_KEY)
    assert named.value.errors["public_key"].startswith("the type 'ssh-dss' is not one of")
    with pytest.raises(InvalidInput) as disguised:
        parse("ssh-rsa " + DSA_KEY.split()[1])
    assert disguised.value.errors["public_key"].startswith("the key data is malformed")
