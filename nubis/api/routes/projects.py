"""`/v1/projects`: the projects the caller is in."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import select

from nubis.api.deps import DatabaseDep, PrincipalDep, SettingsDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.account import ProjectCreate, ProjectOut
from nubis.auth.authz import Action, authorize, project_access, visible_projects
from nubis.errors import Conflict
from nubis.images import store
from nubis.models import Image, Membership, Project, Role, Vm

router = APIRouter(prefix="/v1/projects", tags=["projects"])


@router.get("")
def list_projects(
    db: DatabaseDep, principal: PrincipalDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[ProjectOut]:
    authorize(principal, Action.READ_ACCOUNT)
    with db.reading() as session:
        rows, next_cursor = fetch_page(
            session,
            visible_projects(principal),
            Project.id,
            cursor,
            limit,
            key_of=lambda r: r[0].id,
        )
        return Page(items=[ProjectOut.of(p, role) for p, role in rows], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_project(body: ProjectCreate, db: DatabaseDep, principal: PrincipalDep) -> ProjectOut:
    """Create a project; the caller becomes its owner."""
    authorize(principal, Action.MANAGE_ACCOUNT)
    with db.transaction() as session:
        if session.scalar(select(Project.id).where(Project.name == body.name)) is not None:
            raise Conflict(f"the project name {body.name!r} is taken")
        project = Project(name=body.name)
        session.add(project)
        session.flush()
        session.add(Membership(project_id=project.id, user_id=principal.user_id, role=Role.OWNER))
        return ProjectOut.of(project, Role.OWNER)


@router.get("/{project}")
def read_project(project: str, db: DatabaseDep, principal: PrincipalDep) -> ProjectOut:
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        return ProjectOut.of(access.project, access.role)


@router.delete("/{project}", status_code=status.HTTP_204_NO_CONTENT)
def delete_project(
    project: str, db: DatabaseDep, settings: SettingsDep, principal: PrincipalDep
) -> Response:
    """Delete a project with its members, SSH keys, images and the tokens scoped to it;
    refused while it has VMs."""
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.DELETE_PROJECT)
        vm = session.scalar(select(Vm.name).where(Vm.project_id == access.project.id).limit(1))
        if vm is not None:
            raise Conflict(f"project {access.project.name} has VMs ({vm}, …): delete them first")
        images = list(
            session.scalars(select(Image.id).where(Image.project_id == access.project.id))
        )
        session.delete(access.project)
    for image_id in images:
        store.file_of(settings.data_dir, image_id).unlink(missing_ok=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
