"""Firewall rules from the page of the VM or network they are for: adding one,
removing one. A refused rule is shown on that page with what was typed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from nubis.api.deps import DatabaseDep
from nubis.api.routes import firewall_rules as api
from nubis.api.schemas.firewall import RuleCreate
from nubis.auth.authz import Principal
from nubis.db import Database
from nubis.errors import NubisError
from nubis.web import pages
from nubis.web.deps import CHANGE, SignedIn, form_of
from nubis.web.routes import networks, vms

router = APIRouter(prefix="/projects/{project}", include_in_schema=False)


def _body(form: dict[str, str], target: dict[str, str]) -> RuleCreate:
    fields: dict[str, Any] = {"protocol": form.get("protocol", ""), **target}
    for name in ("port", "source"):
        if form.get(name, "").strip():
            fields[name] = form[name].strip()
    return RuleCreate(**fields)


async def _add(
    request: Request,
    project: str,
    db: Database,
    principal: Principal,
    *,
    target: dict[str, str],
    refused_page: Callable[[dict[str, str], NubisError], Response],
) -> Response:
    """Add the rule the form describes for `target` (its VM or network); a refusal
    shows `refused_page`, rendered as the principal (a 404 for what they may not see)."""
    form = await form_of(request)
    try:
        api.add_firewall_rule(project, _body(form, target), db, principal)
    except (ValidationError, NubisError) as refused:
        return refused_page(form, pages.refusal(refused))
    kind, name = next(iter(target.items()))
    return pages.redirect(f"/projects/{project}/{kind}s/{name}")


@router.post("/networks/{network}/rules", dependencies=CHANGE)
async def add_to_network(
    request: Request, project: str, network: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    def refused(form: dict[str, str], error: NubisError) -> Response:
        return networks.network_page(
            request, db, principal, project, network, form=form, error=error
        )

    return await _add(
        request, project, db, principal, target={"network": network}, refused_page=refused
    )


@router.post("/vms/{vm}/rules", dependencies=CHANGE)
async def add_to_vm(
    request: Request, project: str, vm: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    def refused(form: dict[str, str], error: NubisError) -> Response:
        return vms.vm_page(request, project, vm, db, principal, form=form, error=error)

    return await _add(request, project, db, principal, target={"vm": vm}, refused_page=refused)


@router.post("/firewall-rules/{rule}/delete", dependencies=CHANGE)
async def remove(
    request: Request, project: str, rule: str, db: DatabaseDep, principal: SignedIn
) -> Response:
    """Remove a rule, then go back to the page it was removed from."""
    form = await form_of(request)
    api.remove_firewall_rule(project, rule, db, principal)
    return pages.redirect(pages.own_path(form.get("back"), f"/projects/{project}/vms"))
