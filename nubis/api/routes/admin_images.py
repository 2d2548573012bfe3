"""`/v1/admin/images`: public images, the ones every project can start VMs from.

An upload is `POST` (the name; the image is `uploading`), then `PUT …/file` with the
qcow2 as the raw body, streamed to disk and checked before it is kept, as a project's
upload is (`images.py`). Every change leaves an audit event (`admin.image.create`,
`admin.image.upload`, `admin.image.delete`; `nubis/api/operators.py`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from sqlalchemy import func, select

from nubis.api.deps import DatabaseDep, PrincipalDep, SettingsDep
from nubis.api.operators import Change, change
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.routes.images import UPLOAD_BODY, receive_file
from nubis.api.schemas.image import ImageCreate, ImageOut, PublicImageOut
from nubis.auth.authz import Action, authorize
from nubis.ids import Kind, format_id
from nubis.images import store
from nubis.models import Image, Vm

router = APIRouter(prefix="/v1/admin/images", tags=["admin"])


@router.get("")
def list_public_images(
    db: DatabaseDep, principal: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[PublicImageOut]:
    """The public images, each with how many VMs' disks are made from it (one that no VM
    uses can be deleted)."""
    authorize(principal, Action.OPERATE)
    users = select(Vm.image_id, func.count().label("vms")).group_by(Vm.image_id).subquery("users")
    query = (
        select(Image, func.coalesce(users.c.vms, 0))
        .outerjoin(users, users.c.image_id == Image.id)
        .where(Image.project_id.is_(None))
    )
    with db.reading() as session:
        rows, next_cursor = fetch_page(
            session, query, Image.id, cursor, limit, key_of=lambda r: r[0].id
        )
        return Page(
            items=[PublicImageOut.of_used(image, vms) for image, vms in rows],
            next_cursor=next_cursor,
        )


@router.post("", status_code=status.HTTP_201_CREATED)
def create_public_image(
    body: ImageCreate, act: Annotated[Change, change("admin.image.create")]
) -> ImageOut:
    """Name a new public image; its file comes with `PUT /v1/admin/images/{image}/file`."""
    act.target = body.name
    with act.transaction() as session:
        image = store.begin(session, None, body.name, login_user=body.login_user)
        act.target = format_id(Kind.IMAGE, image.id)
        act.detail = f"{image.name}, logged in to as {image.login_user}: waiting for its file"
        return ImageOut.of(image)


@router.get("/{image}")
def read_public_image(image: str, db: DatabaseDep, principal: PrincipalDep) -> ImageOut:
    authorize(principal, Action.OPERATE)
    with db.reading() as session:
        return ImageOut.of(store.find(session, None, image))


@router.put("/{image}/file", openapi_extra=UPLOAD_BODY)
async def upload_public_image(
    image: str,
    request: Request,
    settings: SettingsDep,
    act: Annotated[Change, change("admin.image.upload")],
) -> ImageOut:
    """The image's qcow2 file as the raw body; refused (422) unless it is a
    self-contained qcow2 (no backing file, no external data file), and then nothing of
    it is kept. 409 if the image is deleted while its file comes in."""
    # The upload keeps its own transactions; its audit event comes once it is done.
    with act.recorded():
        with act.db.reading() as session:
            found = store.find(session, None, image)
            act.target = format_id(Kind.IMAGE, found.id)
            image_id = found.id
        uploaded = await receive_file(request, act.db, settings, image_id)
        act.detail = (
            f"{uploaded.name}: {uploaded.size_bytes} bytes, "
            f"{uploaded.virtual_size_bytes} bytes virtual, sha256 {uploaded.sha256}"
        )
    return uploaded


@router.delete("/{image}", status_code=status.HTTP_204_NO_CONTENT)
def delete_public_image(
    image: str, settings: SettingsDep, act: Annotated[Change, change("admin.image.delete")]
) -> Response:
    """Delete a public image that no VM uses (409 while one does), and its file."""
    with act.transaction() as session:
        found = store.find(session, None, image, public=False)
        act.target = format_id(Kind.IMAGE, found.id)
        act.detail = f"{found.name} deleted"
        files = store.remove(session, settings.data_dir, found)
    # Only once the row is gone for good: a rolled-back delete keeps its file.
    for file in files:
        file.unlink(missing_ok=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
