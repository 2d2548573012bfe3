"""Bodies of the image routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from nubis.api.schemas.common import Input, Name
from nubis.ids import Kind, format_id
from nubis.models import Image


class ImageCreate(Input):
    name: Name
    login_user: str = Field(default="root", min_length=1, max_length=32)
    """Who to log in as on its VMs: the image's default user (cloud images: `debian`,
    `ubuntu`, …, which take the SSH keys and refuse root)."""


class ImageOut(BaseModel):
    id: str
    name: str
    public: bool
    state: str
    size_bytes: int | None
    virtual_size_bytes: int | None
    sha256: str | None
    failure: str | None
    login_user: str
    created_at: datetime

    @classmethod
    def of(cls, image: Image) -> ImageOut:
        return cls(
            id=format_id(Kind.IMAGE, image.id),
            name=image.name,
            public=image.project_id is None,
            state=image.state,
            size_bytes=image.size_bytes,
            virtual_size_bytes=image.virtual_size_bytes,
            sha256=image.sha256,
            failure=image.failure,
            login_user=image.login_user,
            created_at=image.created_at,
        )


class PublicImageOut(ImageOut):
    vms: int
    """How many VMs' disks are made from it: one that no VM uses can be deleted."""

    @classmethod
    def of_used(cls, image: Image, vms: int) -> PublicImageOut:
        return cls(**ImageOut.of(image).model_dump(), vms=vms)
