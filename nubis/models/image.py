"""Images: the qcow2 files VM disks are overlays of."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from nubis.clock import now
from nubis.db.base import Base
from nubis.ids import new_id


class ImageState(StrEnum):
    UPLOADING = "uploading"
    VERIFYING = "verifying"
    ACTIVE = "active"
    FAILED = "failed"


class Image(Base):
    """A project's image, or a public one (no project) that operators add."""

    __tablename__ = "image"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    project_id: Mapped[UUID | None] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=ImageState.UPLOADING)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    failure: Mapped[str | None] = mapped_column(Text)
    """Why it is `failed`."""
    login_user: Mapped[str] = mapped_column(String(32), default="root", server_default="root")
    """Who to log in as on a VM made from it (`nubis vm ssh`): a cloud image's default
    user (`debian`, `ubuntu`) takes the SSH keys, and root is refused."""
    created_at: Mapped[datetime] = mapped_column(default=now)

    __table_args__ = (
        CheckConstraint(
            "state IN ('uploading', 'verifying', 'active', 'failed')", name="image_state"
        ),
        # Names are unique per project, and among the public images.
        Index(
            "ix_image_project_name",
            "project_id",
            "name",
            unique=True,
            postgresql_where=text("project_id IS NOT NULL"),
            sqlite_where=text("project_id IS NOT NULL"),
        ),
        Index(
            "ix_image_public_name",
            "name",
            unique=True,
            postgresql_where=text("project_id IS NULL"),
            sqlite_where=text("project_id IS NULL"),
        ),
    )
