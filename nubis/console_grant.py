"""A console grant: the control plane's word to a host's agent that one connection may
reach one VM's console, for a short while, once.

The API seals a grant with a key both sides know and nobody else: the SHA-256 of the
host's credential (the agent holds the credential, the database its digest). The agent
opens the grant on its console port and relays the connection to the VM's socket only
if the seal is right, the time is not up and the nonce is new, so the port serves the
control plane alone although it listens on the underlay.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from nubis.protocol import ConsoleKind

GRANT_SECONDS = 30
"""How long a grant (and the ticket it is made for) may wait to be used."""
MAX_LINE = 512
"""A sealed grant's most bytes, its newline included."""


class GrantRefused(Exception):
    """A grant that is forged, garbled or late."""


@dataclass(frozen=True)
class Grant:
    vm_id: str
    kind: ConsoleKind
    expires_at: int
    """Unix seconds."""
    nonce: str


def host_key(credential: str) -> str:
    """The sealing key of the host with `credential` (what the database keeps of it)."""
    return hashlib.sha256(credential.encode()).hexdigest()


def grant(vm_id: str, kind: ConsoleKind, now: float) -> Grant:
    """A new grant for `vm_id`'s `kind` console, good for GRANT_SECONDS from `now`."""
    return Grant(vm_id, kind, int(now) + GRANT_SECONDS, secrets.token_hex(16))


def _mac(key: str, payload: str) -> str:
    return hmac.new(key.encode(), payload.encode(), hashlib.sha256).hexdigest()


def seal(key: str, grant: Grant) -> bytes:
    """The line the control plane sends first on the console port."""
    payload = f"{grant.vm_id} {grant.kind} {grant.expires_at} {grant.nonce}"
    return f"{payload} {_mac(key, payload)}\n".encode()


def unseal(key: str, line: bytes, now: float) -> Grant:
    """The grant in `line`, if `key` sealed it and it is not late; else GrantRefused.
    (Whether its nonce was used before is the receiver's to check.)"""
    try:
        fields = line.decode("ascii").rstrip("\n").split(" ")
        vm_id, kind, expires_at, nonce, mac = fields
        payload = " ".join(fields[:4])
        if not hmac.compare_digest(mac, _mac(key, payload)):
            raise GrantRefused("the grant's seal is not the control plane's")
        found = Grant(vm_id, ConsoleKind(kind), int(expires_at), nonce)
    except (UnicodeDecodeError, ValueError) as garbled:
        raise GrantRefused(f"not a console grant: {garbled}") from None
    if found.expires_at < now:
        raise GrantRefused("the grant's time is up")
    return found
