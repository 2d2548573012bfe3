"""`/v1/projects/{project}/firewall-rules`: what may reach the project's network NICs
from outside their networks. A change is told to the hosts it concerns."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select

from nubis import firewall, networks, vms
from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.firewall import RuleCreate, RuleOut
from nubis.auth.authz import Action, project_access
from nubis.errors import InvalidInput
from nubis.models import FirewallRule

router = APIRouter(prefix="/v1/projects/{project}/firewall-rules", tags=["firewall-rules"])

Ref = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.get("")
def list_firewall_rules(
    project: str,
    db: DatabaseDep,
    principal: PrincipalDep,
    *,
    vm: Ref = None,
    network: Ref = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[RuleOut]:
    """The project's rules; `vm` or `network` (a name or an id): only that one's own."""
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        query = select(FirewallRule).where(FirewallRule.project_id == access.project.id)
        if vm is not None:
            query = query.where(FirewallRule.vm_id == vms.find(session, access.project.id, vm).id)
        if network is not None:
            found = networks.find(session, access.project.id, network)
            query = query.where(FirewallRule.network_id == found.id)
        rows, next_cursor = fetch_page(
            session, query, FirewallRule.id, cursor, limit, key_of=lambda r: r[0].id
        )
        return Page(items=[RuleOut.of(rule) for (rule,) in rows], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED)
def add_firewall_rule(
    project: str, body: RuleCreate, db: DatabaseDep, principal: PrincipalDep
) -> RuleOut:
    """Open a protocol (and, for tcp and udp, a port or range) of one VM's project
    network NICs, or of every NIC in one network, to a source network."""
    if body.vm is not None and body.network is not None:
        raise InvalidInput(
            "a rule is for a VM or for a network, not both",
            errors={
                "vm": "give vm or network, not both",
                "network": "give vm or network, not both",
            },
        )
    if body.vm is None and body.network is None:
        raise InvalidInput(
            "say which VM or network the rule is for",
            errors={"vm": "required (or network)", "network": "required (or vm)"},
        )
    rule = firewall.check(body.protocol, body.port, body.source)
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        vm = vms.find(session, access.project.id, body.vm, lock=True) if body.vm else None
        network = networks.find(session, access.project.id, body.network) if body.network else None
        return RuleOut.of(firewall.add(session, access.project.id, rule, vm=vm, network=network))


@router.delete("/{rule}", status_code=status.HTTP_204_NO_CONTENT)
def remove_firewall_rule(
    project: str, rule: str, db: DatabaseDep, principal: PrincipalDep
) -> Response:
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        firewall.delete(session, firewall.find(session, access.project.id, rule))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
