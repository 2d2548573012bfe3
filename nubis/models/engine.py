"""The engine's tables: strands (durable state machines) and their semaphores."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from nubis.choices import StrandStatus
from nubis.clock import now
from nubis.db.base import Base
from nubis.ids import new_id


class Strand(Base):
    """One running instance of a prog: where it is (`prog`, `label`, `stack`), when it
    runs next (`schedule`), and which worker holds it (`lease_owner` until `lease_until`).
    """

    __tablename__ = "strand"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    parent_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("strand.id", ondelete="SET NULL"), index=True
    )
    prog: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(100))
    stack: Mapped[list[Any]]
    """Frames, innermost first: {"data": {...}, "link": [prog, label] | null, "retval": ...}."""
    status: Mapped[str] = mapped_column(String(16), default=StrandStatus.ACTIVE)
    schedule: Mapped[datetime] = mapped_column(default=now)
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[UUID | None]
    tries: Mapped[int] = mapped_column(default=0)
    """Attempts at the current label that have not succeeded (a lost worker counts)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    exitval: Mapped[Any | None]
    reaped: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=now)
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("status IN ('active', 'failed', 'exited')", name="status"),
        CheckConstraint("tries >= 0", name="tries"),
        Index(
            "ix_strand_due",
            "schedule",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )


class Semaphore(Base):
    """A request to a strand ("destroy", "restart", ...), one row per increment."""

    __tablename__ = "semaphore"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    strand_id: Mapped[UUID] = mapped_column(ForeignKey("strand.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)
