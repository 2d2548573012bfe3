"""The operator's pages: hosts with their health and capacity, and what an operator
does to them (drain, undrain, maintenance, evacuate); locations; failed strands and
their retry; the audit log. Every change goes through the API's operator route
function with the API's own audit record (`nubis.api.operators.change`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nubis.api.deps import DatabaseDep, SourceDep
from nubis.api.operators import Change, change
from nubis.api.routes import admin, admin_hosts, admin_locations, admin_strands
from nubis.auth.authz import Principal
from nubis.choices import StrandStatus
from nubis.db import Database
from nubis.errors import NotFound
from nubis.web import pages
from nubis.web.deps import CHANGE, SignedIn

router = APIRouter(prefix="/admin", include_in_schema=False)

HOST_ACTIONS: dict[str, tuple[str, Callable[[str, Change], Any]]] = {
    "drain": ("admin.host.drain", admin_hosts.drain_host),
    "undrain": ("admin.host.undrain", admin_hosts.undrain_host),
    "maintenance": ("admin.host.maintenance", admin_hosts.put_host_in_maintenance),
    "evacuate": ("admin.host.evacuate", admin_hosts.evacuate_host),
}
"""What the hosts page offers: the API's audit action and route function of each."""

OFFERED = {
    "accepting": ("drain", "maintenance", "evacuate"),
    "draining": ("undrain", "maintenance", "evacuate"),
    "maintenance": ("undrain", "evacuate"),
}
"""The actions a host's allocation state makes sense of (the API takes all of them)."""


def _change(
    request: Request, db: Database, principal: Principal, source: str, action: str
) -> Change:
    """The API's operator change for `action`, as its routes get it: authorised as an
    operator, and a refusal audited."""
    made: Change = change(action).dependency(request, db, principal, source)
    return made


def _operator_page(
    request: Request, db: Database, principal: Principal, template: str, **context: Any
) -> Response:
    """An operator's page (its API call has checked that the principal is one)."""
    return pages.render(
        request, template, principal=principal, projects=pages.switcher(db, principal), **context
    )


@router.get("")
def home() -> Response:
    return pages.redirect("/admin/hosts")


@router.get("/hosts")
def hosts_page(request: Request, db: DatabaseDep, principal: SignedIn) -> Response:
    """Every host, asked for again every few seconds (htmx) as their health changes."""
    listed = admin_hosts.list_hosts(db, principal, limit=100, cursor=None)
    template = "admin_host_rows.html" if request.headers.get("HX-Request") else "admin_hosts.html"
    return _operator_page(
        request, db, principal, template, hosts=listed.items, actions=HOST_ACTIONS, offered=OFFERED
    )


@router.post("/hosts/{host}/{action}", dependencies=CHANGE)
def act_on_host(
    request: Request,
    host: str,
    action: str,
    *,
    db: DatabaseDep,
    principal: SignedIn,
    source: SourceDep,
) -> Response:
    found = HOST_ACTIONS.get(action)
    if found is None:
        raise NotFound(f"a host has no action {action!r}")
    audited, call = found
    call(host, _change(request, db, principal, source, audited))
    if request.headers.get("HX-Request"):
        return hosts_page(request, db, principal)
    return pages.redirect("/admin/hosts")


@router.get("/locations")
def locations_page(request: Request, db: DatabaseDep, principal: SignedIn) -> Response:
    listed = admin_locations.list_locations(db, principal, limit=100, cursor=None)
    return _operator_page(request, db, principal, "admin_locations.html", locations=listed.items)


@router.get("/strands")
def strands_page(request: Request, db: DatabaseDep, principal: SignedIn) -> Response:
    """The failed strands (they need an operator), with their last error."""
    listed = admin_strands.list_strands(
        db, principal, status=StrandStatus.FAILED, limit=100, cursor=None
    )
    return _operator_page(request, db, principal, "admin_strands.html", strands=listed.items)


@router.post("/strands/{strand}/retry", dependencies=CHANGE)
def retry_strand(
    request: Request, strand: str, db: DatabaseDep, principal: SignedIn, source: SourceDep
) -> Response:
    admin_strands.retry_strand(
        strand, _change(request, db, principal, source, "admin.strand.retry")
    )
    return pages.redirect("/admin/strands", request)


@router.get("/audit")
def audit_page(request: Request, db: DatabaseDep, principal: SignedIn) -> Response:
    listed = admin.list_audit_events(
        db, principal, action=None, target=None, limit=100, cursor=None
    )
    return _operator_page(request, db, principal, "admin_audit.html", events=listed.items)
