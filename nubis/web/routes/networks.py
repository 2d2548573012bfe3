"""A project's networks: the list, a new one, one network's page with its firewall
rules, deleting one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep
from nubis.api.routes import firewall_rules
from nubis.api.routes import networks as api
from nubis.api.schemas.network import NetworkCreate
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import NubisError
from nubis.protocol import Ipam
from nubis.web import pages
from nubis.web.deps import CHANGE, SignedIn, form_of

router = APIRouter(prefix="/projects/{project}/networks", include_in_schema=False)


def _list(
    request: Request,
    db: Database,
    principal: Principal,
    project: str,
    *,
    form: dict[str, str] | None = None,
    error: NubisError | None = None,
) -> Response:
    page = pages.project_page(db, principal, project)
    return pages.render(
        request,
        "networks.html",
        page=page,
        networks=api.list_networks(project, db, principal, limit=100, cursor=None).items,
        ipams=[ipam.value for ipam in Ipam],
        form=form or {},
        error=error,
    )


@router.get("")
def list_page(request: Request, project: str, db: DatabaseDep, principal: SignedIn) -> Response:
    return _list(request, db, principal, project)


@router.post("", dependencies=CHANGE)
async def create(request: Request, project: str, db: DatabaseDep, principal: SignedIn) -> Response:
    form = await form_of(request)
    try:
        body = NetworkCreate(name=form.get("name", ""), ipam=form.get("ipam") or Ipam.AUTO)
        made = api.create_network(project, body, db, principal)
    except (ValidationError, NubisError) as refused:
        return _list(request, db, principal, project, form=form, error=pages.refusal(refused))
    return pages.redirect(f"/projects/{project}/networks/{made.name}")


def network_page(
    request: Request,
    db: Database,
    principal: Principal,
    project: str,
    network: str,
    *,
    form: dict[str, str] | None = None,
    error: NubisError | None = None,
) -> Response:
    """One network with its firewall rules (and a refused rule's form, kept)."""
    page = pages.project_page(db, principal, project)
    found = api.read_network(project, network, db, principal)
    rules = firewall_rules.list_firewall_rules(
        project, db, principal, network=found.id, limit=100, cursor=None
    ).items
    return pages.render(
        request,
        "network.html",
        page=page,
        network=found,
        rules=rules,
        form=form or {},
        error=error,
    )


@router.get("/{network}")
def show(
    request: Request, project: str, network: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    return network_page(request, db, principal, project, network)


@router.post("/{network}/delete", dependencies=CHANGE)
def delete(
    request: Request, project: str, network: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    try:
        api.delete_network(project, network, db, principal)
    except NubisError as error:
        return network_page(request, db, principal, project, network, error=error)
    return pages.redirect(f"/projects/{project}/networks")
