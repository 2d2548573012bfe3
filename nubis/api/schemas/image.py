"""Bodies of the image routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from nubis.api.schemas.common import Input
from nubis.ids import Kind, format_id
from nubis.models import Image
from nubis.names import Name


class ImageCreate(Input):
    name: Name


class ImageOut(BaseModel):
    id: str
    name: str
    public: bool
    state: str
    size_bytes: int | None
    virtual_size_bytes: int | None
    sha256: str | None
    failure: str | None
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
            created_at=image.created_at,
        )
