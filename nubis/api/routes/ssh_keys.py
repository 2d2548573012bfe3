"""`/v1/projects/{project}/ssh-keys`: the keys a project's VMs get unless told otherwise."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from nubis import sshkey
from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.account import SshKeyCreate, SshKeyOut
from nubis.auth.authz import Action, ProjectAccess, project_access
from nubis.db.refs import ref_clause
from nubis.errors import Conflict, NotFound
from nubis.ids import Kind
from nubis.models import SshKey

router = APIRouter(prefix="/v1/projects/{project}/ssh-keys", tags=["ssh-keys"])


def _key(session: Session, access: ProjectAccess, ref: str) -> SshKey:
    key = session.scalars(
        select(SshKey).where(
            SshKey.project_id == access.project.id,
            ref_clause(Kind.SSH_KEY, SshKey.id, SshKey.name, ref),
        )
    ).one_or_none()
    if key is None:
        raise NotFound(f"no SSH key {ref!r} in project {access.project.name}")
    return key


@router.get("")
def list_ssh_keys(
    project: str,
    db: DatabaseDep,
    principal: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[SshKeyOut]:
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        query = select(SshKey).where(SshKey.project_id == access.project.id)
        rows, next_cursor = fetch_page(
            session, query, SshKey.id, cursor, limit, key_of=lambda r: r[0].id
        )
        return Page(items=[SshKeyOut.of(k) for (k,) in rows], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED)
def add_ssh_key(
    project: str, body: SshKeyCreate, db: DatabaseDep, principal: PrincipalDep
) -> SshKeyOut:
    """Add an OpenSSH public key (the line of a `.pub` file); a malformed one is refused."""
    parsed = sshkey.parse(body.public_key)
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        clash = session.scalars(
            select(SshKey).where(
                SshKey.project_id == access.project.id,
                or_(SshKey.name == body.name, SshKey.fingerprint == parsed.fingerprint),
            )
        ).first()
        if clash is not None:
            reason = "name" if clash.name == body.name else f"key ({parsed.fingerprint})"
            raise Conflict(f"the project has an SSH key with this {reason} already: {clash.name}")
        key = SshKey(
            project_id=access.project.id,
            name=body.name,
            public_key=parsed.line,
            fingerprint=parsed.fingerprint,
        )
        session.add(key)
        session.flush()
        return SshKeyOut.of(key)


@router.get("/{key}")
def read_ssh_key(project: str, key: str, db: DatabaseDep, principal: PrincipalDep) -> SshKeyOut:
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        return SshKeyOut.of(_key(session, access, key))


@router.delete("/{key}", status_code=status.HTTP_204_NO_CONTENT)
def remove_ssh_key(project: str, key: str, db: DatabaseDep, principal: PrincipalDep) -> Response:
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        session.delete(_key(session, access, key))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
