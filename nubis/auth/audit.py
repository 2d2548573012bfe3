"""The audit log: security-relevant events, kept in the database for operators."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from sqlalchemy.orm import Session

from nubis.models import AuditEvent


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    THROTTLED = "throttled"


def record(
    session: Session,
    action: str,
    outcome: Outcome,
    *,
    user_id: UUID | None = None,
    email: str | None = None,
    source: str | None = None,
    target: str | None = None,
    detail: str | None = None,
) -> None:
    session.add(
        AuditEvent(
            action=action,
            outcome=outcome,
            user_id=user_id,
            email=email[:254] if email else None,
            source=source[:64] if source else None,
            target=target[:100] if target else None,
            detail=detail,
        )
    )
