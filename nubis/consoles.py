"""A VM's consoles (serial and VNC), reached from a browser or the CLI through the API.

A member who may change the VM asks for a ticket: a secret good once, for
GRANT_SECONDS, bound to their token (a session's too) and to the VM on the host it runs
on. The API spends it when the console's websocket opens, and then connects to that
host's console port with a grant sealed for it (see `nubis.console_grant`). While the
console is open, `still_open` is asked again and again: it closes when the token is
revoked (a sign-out), the user loses the role, or the VM is deleted, stopped or moved.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlalchemy import update
from sqlalchemy.orm import Session

from nubis.auth import tokens
from nubis.auth.authz import Action, Principal, project_access
from nubis.clock import now
from nubis.console_grant import GRANT_SECONDS, Grant, grant, seal
from nubis.errors import Conflict, NotFound, Unauthenticated
from nubis.ids import Kind, format_id
from nubis.models import ON_HOST, ConsoleTicket, Host, Vm
from nubis.protocol import CONSOLE_PORT, ConsoleKind, VmState

TICKET_PREFIX = "nubis_console_"


@dataclass(frozen=True)
class Reach:
    """Where the API connects for an open console, and what it says first."""

    host: str
    port: int
    grant: Grant
    key: str

    @property
    def line(self) -> bytes:
        return seal(self.key, self.grant)


def open_ticket(
    session: Session, principal: Principal, vm: Vm, kind: ConsoleKind
) -> tuple[ConsoleTicket, str]:
    """A new ticket to `vm`'s `kind` console and its secret (shown once); the caller
    has checked that `principal` may change the VM."""
    if vm.label not in ON_HOST or vm.host_id is None or vm.observed != VmState.RUNNING:
        raise Conflict(f"VM {vm.name!r} is not running: its console is there while it runs")
    secret = TICKET_PREFIX + secrets.token_urlsafe(32)
    ticket = ConsoleTicket(
        secret_sha256=tokens.digest(secret),
        token_id=principal.token_id,
        vm_id=vm.id,
        host_id=vm.host_id,
        kind=kind,
        expires_at=now() + timedelta(seconds=GRANT_SECONDS),
    )
    session.add(ticket)
    session.flush()
    return ticket, secret


def redeem(session: Session, secret: str) -> UUID:
    """Spend the ticket with `secret`: its id, or Unauthenticated if it is unknown,
    used or late. Two who race for one ticket: one wins."""
    at = now()
    spent = session.execute(
        update(ConsoleTicket)
        .where(
            ConsoleTicket.secret_sha256 == tokens.digest(secret),
            ConsoleTicket.used_at.is_(None),
            ConsoleTicket.expires_at > at,
        )
        .values(used_at=at)
        .returning(ConsoleTicket.id)
    ).scalar_one_or_none()
    if spent is None:
        raise Unauthenticated("the console ticket is not valid: unknown, used or late")
    return spent


def still_open(session: Session, ticket_id: UUID) -> tuple[Vm, Host]:
    """The VM and host of spent ticket `ticket_id`, while its console may stay open;
    else the reason it may not (401, 403, 404 or 409, as the API would answer it)."""
    ticket = session.get(ConsoleTicket, ticket_id)
    if ticket is None:
        raise NotFound("the VM of this console is gone")
    principal = tokens.principal_of(session, ticket.token_id)
    vm = session.get(Vm, ticket.vm_id)
    if vm is None:
        raise NotFound("the VM of this console is gone")
    project_access(session, principal, format_id(Kind.PROJECT, vm.project_id), Action.WRITE)
    if vm.label not in ON_HOST or vm.host_id != ticket.host_id or not vm.running:
        raise Conflict(f"VM {vm.name!r} is stopped, deleted or moved")
    host = session.get(Host, ticket.host_id)
    if host is None:
        raise NotFound("the VM's host is gone")
    return vm, host


def reach(session: Session, ticket_id: UUID, kind: ConsoleKind) -> Reach:
    """Where to connect for spent ticket `ticket_id`'s console, with a fresh grant."""
    vm, host = still_open(session, ticket_id)
    return Reach(
        host=host.underlay_address,
        port=CONSOLE_PORT,
        grant=grant(format_id(Kind.VM, vm.id), kind, now().timestamp()),
        key=host.credential_sha256,
    )
