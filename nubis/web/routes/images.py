"""A project's images: the list (its own and the public ones), an upload from the
browser, deleting one.

An upload is the API's two steps: the form names the image (POST), then the page's
script streams the file as the raw body of a PUT, which the API's own route stores
while the page shows the progress. Without scripts the list still works; an upload
needs them (a plain form would send the file as multipart, not streamed).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep, SettingsDep
from nubis.api.routes import images as api
from nubis.api.schemas.image import ImageCreate
from nubis.errors import NubisError
from nubis.web import pages
from nubis.web.deps import CHANGE, SignedIn, form_of

router = APIRouter(prefix="/projects/{project}/images", include_in_schema=False)


@router.get("")
def list_page(request: Request, project: str, db: DatabaseDep, principal: SignedIn) -> Response:
    page = pages.project_page(db, principal, project)
    listed = api.list_images(project, db, principal, limit=100, cursor=None).items
    return pages.render(request, "images.html", page=page, images=listed)


@router.post("", dependencies=CHANGE)
async def create(request: Request, project: str, db: DatabaseDep, principal: SignedIn) -> Response:
    """Name the image; the page's script sends its file next. Answers JSON (the
    image, or the API's problem document) to that script."""
    form = await form_of(request)
    try:
        body = ImageCreate(name=form.get("name", ""), login_user=form.get("login_user") or "root")
        made = api.create_image(project, body, db, principal)
    except (ValidationError, NubisError) as refused:
        error = pages.refusal(refused)
        return JSONResponse(error.problem(), status_code=error.status)
    return JSONResponse(made.model_dump(mode="json"), status_code=201)


@router.put("/{image}/file", dependencies=CHANGE)
async def upload(
    request: Request,
    project: str,
    image: str,
    *,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: SignedIn,
) -> Response:
    """The file, streamed into the store by the API's route (checked as it is there)."""
    try:
        stored = await api.upload_image(
            project, image, request, db=db, settings=settings, principal=principal
        )
    except NubisError as refused:
        return JSONResponse(refused.problem(), status_code=refused.status)
    return JSONResponse(stored.model_dump(mode="json"))


@router.post("/{image}/delete", dependencies=CHANGE)
def delete(
    request: Request,
    project: str,
    image: str,
    *,
    db: DatabaseDep,
    settings: SettingsDep,
    principal: SignedIn,
) -> Response:
    api.delete_image(project, image, db, settings, principal)
    return pages.redirect(f"/projects/{project}/images", request)
