"""Public images added from the control plane's own machine: a qcow2 file taken into the
store as an upload would be, and the tiny guest image built and added once.

A file goes the same way as an upload (`store.receive`): copied in, hashed, checked by
`qemu-img info`, kept only if it is a self-contained qcow2. It is checked before any
row is made too, so a refused file leaves nothing, not even for a moment.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from nubis.config import Settings
from nubis.db import Database
from nubis.errors import Conflict, InvalidInput
from nubis.guestimage import tiny
from nubis.guestimage.debian import DEB_CACHE
from nubis.images import store
from nubis.images.verify import verify
from nubis.models import Image, ImageState
from nubis.names import check_name

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk


def register(db: Database, settings: Settings, name: str, path: Path) -> Image:
    """Copy the qcow2 file `path` into the store as the public image `name` (active).

    Raises ImageRefused (not a self-contained qcow2), Conflict (the name is taken),
    InvalidInput (no such file, a bad name), PayloadTooLarge; each leaves nothing.
    """
    check_name(name)
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file")
    if path.stat().st_size > settings.image_max_bytes:
        raise InvalidInput(f"{path} is larger than the {settings.image_max_bytes} bytes allowed")
    verify(path)
    with db.transaction() as session:
        image_id = store.begin(session, None, name).id
    try:
        asyncio.run(
            store.receive(db, settings.data_dir, image_id, _chunks(path), settings.image_max_bytes)
        )
    except BaseException:
        _drop_unfinished(db, image_id)
        raise
    with db.reading() as session:
        image = session.get(Image, image_id)
    if image is None:
        raise Conflict(f"the image {name} was deleted while it was added")
    return image


def _drop_unfinished(db: Database, image_id: UUID) -> None:
    """Remove the row of an image whose file did not come in (the upload path keeps a
    `failed` row for a client to see; here the caller gets the error instead)."""
    with db.transaction() as session:
        image = session.get(Image, image_id)
        if image is not None and image.state != ImageState.ACTIVE:
            session.delete(image)


def _public_named(db: Database, name: str) -> bool:
    with db.reading() as session:
        found = session.scalar(
            select(Image.id).where(Image.project_id.is_(None), Image.name == name)
        )
    return found is not None


def ensure_tiny(db: Database, settings: Settings, *, cache: Path = DEB_CACHE) -> None:
    """Build the tiny guest image and add it as the public image `tiny`, unless there is
    a public image of that name already. Two processes may race: the one that comes
    second finds the name taken and leaves it."""
    if _public_named(db, tiny.NAME):
        return
    with tempfile.TemporaryDirectory(prefix="nubis-tiny-") as scratch:
        image = tiny.build(Path(scratch) / f"{tiny.NAME}.qcow2", cache=cache)
        if _public_named(db, tiny.NAME):
            return
        try:
            register(db, settings, tiny.NAME, image)
        except Conflict:
            return
        except IntegrityError:
            # The unique index caught what the check before the insert could not.
            if _public_named(db, tiny.NAME):
                return
            raise
    log.info("added the public image %s", tiny.NAME)
