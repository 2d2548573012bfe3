"""`/v1/projects/{project}/images`: a project's own images (public ones: `admin_images.py`).

An upload is `POST` (the name; the image is `uploading`), then `PUT …/file` with the
qcow2 as the raw body, streamed to disk and checked before it is kept.

Each API process, as it starts, cleans what uploads of crashed processes left
(`store.recover`), and once more STALE_SECONDS later: a process restarted at once
after a crash finds that crash's files still fresh, so it waits until they are stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import UUID

from fastapi import APIRouter, FastAPI, Request, Response, status
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool

from nubis.api.deps import DatabaseDep, PrincipalDep, SettingsDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.image import ImageCreate, ImageOut
from nubis.auth.authz import Action, project_access
from nubis.config import Settings
from nubis.db import Database
from nubis.images import store
from nubis.models import Image

log = logging.getLogger(__name__)


async def _recover(db: Database, data_dir: Path, after: float = 0.0) -> None:
    await asyncio.sleep(after)
    try:
        cleaned = await run_in_threadpool(store.recover, db, data_dir)
    except Exception:
        log.exception("could not clean up after interrupted image uploads")
        return
    if cleaned:
        log.info("cleaned %d images or files of interrupted uploads", cleaned)


@asynccontextmanager
async def _upkeep(app: FastAPI) -> AsyncIterator[None]:
    """The start and stop of an API process, for the image store."""
    db: Database = app.state.database
    settings: Settings = app.state.settings
    await _recover(db, settings.data_dir)
    later = asyncio.create_task(_recover(db, settings.data_dir, after=store.STALE_SECONDS))
    try:
        yield
    finally:
        later.cancel()


router = APIRouter(tags=["images"], lifespan=_upkeep)

PROJECT = "/v1/projects/{project}/images"
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def receive_file(
    request: Request, db: Database, settings: Settings, image_id: UUID
) -> ImageOut:
    """Stream the request's body into the store as the image's file; the image as it is
    then (`active`), or the reason it was refused raised."""
    await store.receive(db, settings.data_dir, image_id, request.stream(), settings.image_max_bytes)
    with db.reading() as session:
        image = session.get(Image, image_id)
        assert image is not None
        return ImageOut.of(image)


def _delete(db: Database, data_dir: Path, project_id: UUID | None, ref: str) -> Response:
    with db.transaction() as session:
        image = store.find(session, project_id, ref, public=False)
        files = store.remove(session, data_dir, image)
    for file in files:
        file.unlink(missing_ok=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(PROJECT)
def list_images(
    project: str,
    db: DatabaseDep,
    principal: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[ImageOut]:
    """The project's images and the public ones."""
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        query = select(Image).where(
            or_(Image.project_id == access.project.id, Image.project_id.is_(None))
        )
        rows, next_cursor = fetch_page(
            session, query, Image.id, cursor, limit, key_of=lambda r: r[0].id
        )
        return Page(items=[ImageOut.of(i) for (i,) in rows], next_cursor=next_cursor)


@router.post(PROJECT, status_code=status.HTTP_201_CREATED)
def create_image(
    project: str, body: ImageCreate, db: DatabaseDep, principal: PrincipalDep
) -> ImageOut:
    """Name a new image; its file comes with `PUT …/images/{image}/file`."""
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        return ImageOut.of(
            store.begin(session, access.project.id, body.name, login_user=body.login_user)
        )


@router.put(f"{PROJECT}/{{image}}/file", openapi_extra=UPLOAD_BODY)
async def upload_image(
    project: str,
    image: str,
    request: Request,
    *,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> ImageOut:
    """The image's qcow2 file as the raw body; refused (422) unless it is a
    self-contained qcow2 (no backing file, no external data file), and then nothing of
    it is kept. 409 if the image is deleted while its file comes in."""
    with db.reading() as session:
        access = project_access(session, principal, project, Action.WRITE)
        image_id = store.find(session, access.project.id, image, public=False).id
    return await receive_file(request, db, settings, image_id)


@router.get(f"{PROJECT}/{{image}}")
def read_image(project: str, image: str, db: DatabaseDep, principal: PrincipalDep) -> ImageOut:
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        return ImageOut.of(store.find(session, access.project.id, image))


@router.delete(f"{PROJECT}/{{image}}", status_code=status.HTTP_204_NO_CONTENT)
def delete_image(
    project: str, image: str, db: DatabaseDep, settings: SettingsDep, principal: PrincipalDep
) -> Response:
    with db.reading() as session:
        project_id = project_access(session, principal, project, Action.WRITE).project.id
    return _delete(db, settings.data_dir, project_id, image)
