"""`/v1/projects/{project}/networks`: project networks. Making or deleting one only
writes rows (a network is on a host once a VM there has a NIC in it), so these answer
at once."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import select

from nubis import locations, networks
from nubis.api.deps import DatabaseDep, PrincipalDep
from nubis.api.pagination import Cursor, Limit, Page, fetch_page
from nubis.api.schemas.network import NetworkCreate, NetworkOut
from nubis.auth.authz import Action, project_access
from nubis.ipam import subnets
from nubis.models import Location, Network, Subnet

router = APIRouter(prefix="/v1/projects/{project}/networks", tags=["networks"])


@router.get("")
def list_networks(
    project: str,
    db: DatabaseDep,
    principal: PrincipalDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[NetworkOut]:
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        query = (
            select(Network, Location, Subnet.number)
            .join(Location, Location.id == Network.location_id)
            .outerjoin(Subnet, Subnet.network_id == Network.id)
            .where(Network.project_id == access.project.id)
        )
        rows, next_cursor = fetch_page(
            session, query, Network.id, cursor, limit, key_of=lambda r: r[0].id
        )
        items = [
            NetworkOut.of(
                networks.Placed(
                    network,
                    location,
                    None if number is None else subnets.subnet(location.prefix, number),
                )
            )
            for network, location, number in rows
        ]
        return Page(items=items, next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_network(
    project: str, body: NetworkCreate, db: DatabaseDep, principal: PrincipalDep
) -> NetworkOut:
    """Make a network: a VNI of its location and, for IPAM `manual` and `auto`, a /64."""
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        location = locations.of_request(session, body.location)
        return NetworkOut.of(
            networks.create(session, access.project.id, location, body.name, body.ipam)
        )


@router.get("/{network}")
def read_network(
    project: str, network: str, db: DatabaseDep, principal: PrincipalDep
) -> NetworkOut:
    with db.reading() as session:
        access = project_access(session, principal, project, Action.READ)
        found = networks.find(session, access.project.id, network)
        return NetworkOut.of(networks.placed(session, found))


@router.delete("/{network}", status_code=status.HTTP_204_NO_CONTENT)
def delete_network(
    project: str, network: str, db: DatabaseDep, principal: PrincipalDep
) -> Response:
    """Delete a network no VM has a NIC in (409 naming the VMs otherwise); its /64 and
    its firewall rules go with it."""
    with db.transaction() as session:
        access = project_access(session, principal, project, Action.WRITE)
        networks.delete(session, networks.find(session, access.project.id, network))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
