"""What every operator route that changes something shares: the operator check, and the
audit event the change leaves, in one place.

A route takes its change as a dependency named after its stable action:

    def drain_host(host: str, act: Annotated[Change, change("admin.host.drain")]) -> …:
        with act.transaction() as session:
            found = hosts.find(session, host, lock=True)
            act.target = format_id(Kind.HOST, found.id)
            act.detail = …

The dependency refuses anyone but an operator with an unscoped token. What the route
changes and its audit event (`success`, with the operator, the action, the target and
the detail) commit together; a change refused (a 4xx: not an operator, no such host, a
host that still holds VMs, …) rolls back and leaves an audit event (`failure`, the
reason as its detail) in a transaction of its own. A request without a valid token, or
whose body does not validate, reaches no route and leaves none. Reads are not audited.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from nubis.api.deps import DatabaseDep, PrincipalDep, SourceDep
from nubis.auth import audit
from nubis.auth.authz import Action, Principal, authorize
from nubis.db import Database
from nubis.errors import NubisError
from nubis.models import User


@dataclass
class Change:
    """An operator's change under way: who asks, what, to what."""

    db: Database
    principal: Principal
    action: str
    source: str
    target: str | None = None
    """Until the route names it (an id), the route's path parameter as given."""
    detail: str | None = None
    """A short sentence for people: what changed."""

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A transaction that commits the change together with its audit event."""
        with self.recorded_on_refusal(), self.db.transaction() as session:
            yield session
            self._record(session, audit.Outcome.SUCCESS, self.detail)

    @contextmanager
    def recorded(self) -> Iterator[None]:
        """For work that keeps its own transactions (an upload): its audit event comes
        in a transaction of its own once the work is done."""
        with self.recorded_on_refusal():
            yield
        with self.db.transaction() as session:
            self._record(session, audit.Outcome.SUCCESS, self.detail)

    @contextmanager
    def recorded_on_refusal(self) -> Iterator[None]:
        try:
            yield
        except NubisError as error:
            if error.status < 500:
                with self.db.transaction() as session:
                    self._record(session, audit.Outcome.FAILURE, error.detail)
            raise

    def _record(self, session: Session, outcome: audit.Outcome, detail: str | None) -> None:
        operator = session.get(User, self.principal.user_id)
        audit.record(
            session,
            self.action,
            outcome,
            user_id=self.principal.user_id,
            email=operator.email if operator else None,
            source=self.source,
            target=self.target,
            detail=detail,
        )


def change(action: str) -> Any:
    """The dependency of an operator route that does `action` (e.g. `admin.host.drain`)."""

    def operator_change(
        request: Request, db: DatabaseDep, principal: PrincipalDep, source: SourceDep
    ) -> Change:
        given = next(iter(request.path_params.values()), None)
        made = Change(db, principal, action, source, target=given)
        # A user who is not an operator (or whose token is scoped to a project) trying
        # an operator's change is worth a look too.
        with made.recorded_on_refusal():
            authorize(principal, Action.OPERATE)
        return made

    return Depends(operator_change)
