"""TOTP codes: valid for their step and one step either side, never twice."""

from __future__ import annotations

import pyotp

from nubis.auth.totp import accepted_step, new_seed, provisioning_uri

AT = 1_800_000_000.0  # a fixed moment, so steps are known
STEP = int(AT // 30)


def test_the_current_code_is_accepted_for_its_step() -> None:
    seed = new_seed()
    assert accepted_step(seed, pyotp.TOTP(seed).at(AT), None, at=AT) == STEP


def test_a_code_one_step_off_is_accepted_two_steps_off_is_not() -> None:
    seed = new_seed()
    device = pyotp.TOTP(seed)
    assert accepted_step(seed, device.at(AT - 30), None, at=AT) == STEP - 1
    assert accepted_step(seed, device.at(AT + 30), None, at=AT) == STEP + 1
    assert accepted_step(seed, device.at(AT - 60), None, at=AT) is None


def test_a_code_of_a_used_step_or_before_is_refused() -> None:
    seed = new_seed()
    code = pyotp.TOTP(seed).at(AT)
    assert accepted_step(seed, code, STEP, at=AT) is None
    assert accepted_step(seed, pyotp.TOTP(seed).at(AT - 30), STEP, at=AT) is None


def test_malformed_codes_are_refused() -> None:
    seed = new_seed()
    for code in ["", "12345", "1234567", "abcdef", "12 456"]:
        assert accepted_step(seed, code, None, at=AT) is None


def test_the_provisioning_uri_names_the_account_and_issuer() -> None:
    uri = provisioning_uri(new_seed(), "alice@example.test")
    assert uri.startswith("otpauth://totp/nubis:alice%40example.test?")
    assert "issuer=nubis" in uri
