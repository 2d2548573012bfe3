"""The control plane's image store: image rows and the files they describe.

An upload is two steps: the row is made (`uploading`), then the file is streamed in,
hashed as it comes, checked by `qemu-img info` (`verifying`) and, if it is a
self-contained qcow2, kept (`active`). A refused file leaves nothing behind, neither
file nor row; an upload that breaks off leaves a `failed` row and no file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from nubis.db import Database
from nubis.errors import Conflict, ImageRefused, NotFound, PayloadTooLarge
from nubis.ids import Kind, format_id
from nubis.images.verify import verify
from nubis.models import Image, ImageState, Vm
from nubis.names import check_name, ref_clause


def directory(data_dir: Path) -> Path:
    return data_dir / "images"


def file_of(data_dir: Path, image_id: UUID) -> Path:
    return directory(data_dir) / f"{format_id(Kind.IMAGE, image_id)}.qcow2"


def begin(session: Session, project_id: UUID | None, name: str) -> Image:
    """A new image row, waiting for its file. `project_id` None: a public image."""
    check_name(name)
    clash = select(Image.id).where(Image.name == name)
    clash = clash.where(
        Image.project_id.is_(None) if project_id is None else Image.project_id == project_id
    )
    if session.scalar(clash) is not None:
        where = "a public image" if project_id is None else "an image in the project"
        raise Conflict(f"there is {where} named {name!r} already")
    image = Image(project_id=project_id, name=name)
    session.add(image)
    session.flush()
    return image


def find(session: Session, project_id: UUID | None, ref: str, *, public: bool = True) -> Image:
    """The image `ref` names: the project's own first, then (if `public`) a public one."""
    owners = [Image.project_id == project_id] if project_id is not None else []
    if public or project_id is None:
        owners.append(Image.project_id.is_(None))
    rows = session.scalars(
        select(Image)
        .where(or_(*owners), ref_clause(Kind.IMAGE, Image.id, Image.name, ref))
        .order_by(Image.project_id.is_(None))
    ).all()
    if not rows:
        raise NotFound(f"no image {ref!r}")
    return rows[0]


async def receive(
    db: Database, data_dir: Path, image_id: UUID, chunks: AsyncIterator[bytes], max_bytes: int
) -> None:
    """Stream an image's file in, check it, and keep it or refuse it (ImageRefused)."""
    target = file_of(data_dir, image_id)
    partial = target.with_suffix(".partial")
    await run_in_threadpool(_claim, db, image_id, partial)
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"an image may be at most {max_bytes} bytes")
                digest.update(chunk)
                await run_in_threadpool(out.write, chunk)
            out.flush()
            os.fsync(out.fileno())
    except PayloadTooLarge:
        partial.unlink(missing_ok=True)
        await run_in_threadpool(_forget, db, image_id)
        raise
    except BaseException:
        partial.unlink(missing_ok=True)
        await run_in_threadpool(_fail, db, image_id, "the upload broke off")
        raise
    await run_in_threadpool(
        lambda: _settle(db, image_id, partial, target, size=size, sha256=digest.hexdigest())
    )


def _claim(db: Database, image_id: UUID, partial: Path) -> None:
    with db.transaction() as session:
        image = session.get(Image, image_id, with_for_update=True)
        if image is None:
            raise NotFound("no such image")
        if image.state != ImageState.UPLOADING or partial.exists():
            raise Conflict(f"image {image.name} is {image.state}; it takes its file once")
        partial.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial.touch(mode=0o600)


def _settle(
    db: Database, image_id: UUID, partial: Path, target: Path, *, size: int, sha256: str
) -> None:
    with db.transaction() as session:
        image = session.get(Image, image_id)
        if image is not None:
            image.state = ImageState.VERIFYING
    try:
        facts = verify(partial)
    except ImageRefused:
        partial.unlink(missing_ok=True)
        _forget(db, image_id)
        raise
    os.replace(partial, target)
    with db.transaction() as session:
        image = session.get(Image, image_id)
        if image is None:  # deleted meanwhile
            target.unlink(missing_ok=True)
            raise NotFound("the image was deleted during its upload")
        image.state = ImageState.ACTIVE
        image.size_bytes = size
        image.virtual_size_bytes = facts.virtual_size_bytes
        image.sha256 = sha256


def _forget(db: Database, image_id: UUID) -> None:
    with db.transaction() as session:
        image = session.get(Image, image_id)
        if image is not None:
            session.delete(image)


def _fail(db: Database, image_id: UUID, why: str) -> None:
    with db.transaction() as session:
        image = session.get(Image, image_id)
        if image is not None:
            image.state = ImageState.FAILED
            image.failure = why


def remove(session: Session, data_dir: Path, image: Image) -> Path:
    """Delete the row of an image no VM uses; its file, to unlink once that commits."""
    user = session.scalar(select(Vm.name).where(Vm.image_id == image.id).limit(1))
    if user is not None:
        raise Conflict(f"image {image.name} is in use by VM {user}")
    if file_of(data_dir, image.id).with_suffix(".partial").exists():
        raise Conflict(f"image {image.name} is being uploaded")
    session.delete(image)
    session.flush()
    return file_of(data_dir, image.id)
