"""SSH public keys in OpenSSH format (one `authorized_keys` line without options)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from nubis.errors import InvalidInput

TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class PublicKey:
    line: str
    """`type base64 [comment]`, with single spaces."""
    fingerprint: str
    """`SHA256:…` as `ssh-keygen -l` prints it."""


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"not a usable SSH public key: {reason}", errors={"public_key": reason})


def parse(text: str) -> PublicKey:
    """The key in `text`, or InvalidInput saying what is wrong with it."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise _refuse("give exactly one key, on one line")
    parts = lines[0].split(None, 2)
    if len(parts) < 2:
        raise _refuse("expected '<type> <base64> [comment]', as in a .pub file")
    kind, blob_text = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else ""
    if kind not in TYPES:
        raise _refuse(f"the type {kind[:40]!r} is not one of {', '.join(TYPES)}")
    try:
        blob = base64.b64decode(blob_text, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse("the key data is not valid base64") from None
    try:
        key = load_ssh_public_key(f"{kind} {blob_text}".encode())
    except (ValueError, UnsupportedAlgorithm) as error:
        raise _refuse(f"the key data is malformed ({error})") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise _refuse(f"an RSA key needs at least {MIN_RSA_BITS} bits, this has {key.key_size}")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).rstrip(b"=").decode()
    line = f"{kind} {blob_text}" + (f" {comment}" if comment else "")
    return PublicKey(line=line, fingerprint=f"SHA256:{digest}")
