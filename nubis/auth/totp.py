"""Time-based one-time passwords (RFC 6238): 6 digits, 30 s steps, one step of drift.

A code is accepted once: the step it belongs to is remembered, and a code of that step
or an earlier one is refused afterwards.
"""

from __future__ import annotations

import time

import pyotp

ISSUER = "nubis"
STEP_SECONDS = 30
DRIFT_STEPS = 1


def new_seed() -> str:
    return pyotp.random_base32()


def provisioning_uri(seed: str, account: str) -> str:
    """The otpauth:// URI an authenticator app imports (as text or a QR code)."""
    return pyotp.TOTP(seed).provisioning_uri(name=account, issuer_name=ISSUER)


def accepted_step(
    seed: str, code: str, last_step: int | None, at: float | None = None
) -> int | None:
    """The time step `code` is valid for, if it is valid now and newer than `last_step`."""
    code = code.strip()
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(seed, interval=STEP_SECONDS)
    current = int((time.time() if at is None else at) // STEP_SECONDS)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None
