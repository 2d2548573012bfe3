"""Who may call what: every route of the app against every kind of caller, as one table,
and no answer that carries data of a project the caller is not in.

The callers, for a project P: nobody (no token); P's viewer, member, admin and owner; an
outsider, who owns another project Q; an operator in no project; and Sam, an operator
and owner of P and of a third project S, through a token scoped to P and one scoped to S.

Everything of P's has "papaya" in its name or email, everything of Q's "quince",
everything of S's "sorrel". People outside a project never see its word in an answer.
"""

from __future__ import annotations

import itertools
import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from uuid import UUID

import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from nubis import firewall, locations, networks, sshkey, vms
from nubis.api import create_app
from nubis.auth import accounts, tokens
from nubis.auth.passwords import hash_password
from nubis.clock import now
from nubis.db import Database
from nubis.ids import Kind, format_id, new_id
from nubis.models import (
    ApiToken,
    Host,
    Image,
    ImageState,
    Invitation,
    Membership,
    Project,
    Role,
    SshKey,
    Strand,
    StrandStatus,
    Subnet,
    User,
)
from nubis.progs.vm import VmNexus
from nubis.protocol import Ipam
from nubis.scheduling.weigher import Policy
from nubis.secretbox import SecretBox
from tests.integration.api.people import PASSWORD


class Who(StrEnum):
    """The callers, in the order of the table's columns."""

    ANONYMOUS = "anonymous"
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"
    OUTSIDER = "outsider"
    """Owner of Q, not in P."""
    OPERATOR = "operator"
    """An operator in no project."""
    SCOPED = "scoped"
    """Sam's token scoped to P: Sam is an operator and an owner of P and S."""
    ELSEWHERE = "elsewhere"
    """Sam's token scoped to S: P does not exist for it."""


Statuses = tuple[int, int, int, int, int, int, int, int, int]
"""The expected status for each caller, in `Who` order."""

P, Q, S = "papaya", "quince", "sorrel"
BLIND_TO: dict[Who, tuple[str, ...]] = {
    Who.ANONYMOUS: (P, Q, S),
    Who.VIEWER: (Q, S),
    Who.MEMBER: (Q, S),
    Who.ADMIN: (Q, S),
    Who.OWNER: (Q, S),
    Who.OUTSIDER: (P, S),
    Who.OPERATOR: (P, Q, S),
    Who.SCOPED: (Q, S),
    Who.ELSEWHERE: (P, Q),
}
"""The projects whose data each caller never sees (the operator's outside /v1/admin)."""


def _public_key(comment: str) -> str:
    """A new ed25519 key as a line of a `.pub` file."""
    blob = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    )
    return f"{blob.decode()} {comment}"


@cache
def _password_hash() -> str:
    """One argon2 hash of PASSWORD for every user: hashing per user would be slow."""
    return hash_password(PASSWORD)


@dataclass
class World:
    """P, Q and S with their people, made straight in the database."""

    db: Database
    box: SecretBox
    n: int
    project: str
    """P's id."""
    users: dict[Who, UUID]
    emails: dict[Who, str]
    secrets: dict[Who, str]
    spares: dict[Who, str]
    """The id of a second, unscoped token of each caller's user, to revoke."""
    target: str
    """The id of a viewer of P that member routes act on."""
    sam: str
    """The id of Sam, P's second owner."""
    newcomer: str
    """The id of a user in no project."""
    newcomer_email: str
    invitation: str
    """The id of P's pending invitation, to an address no account has."""
    deploy: str
    """The id of a token scoped to P, held by P's member."""
    key: str
    """The id of P's SSH key."""
    image: str
    """The name of P's image, waiting for its file."""
    location: str
    """The name of a location with room for a VM of P's ready image."""
    ready: str
    """The name of P's active image."""
    vm: str
    """The name of P's VM."""
    public_image: str
    """The name of a public image, waiting for its file."""
    network: str
    """The name of P's network that P's VM has a NIC in."""
    spare: str
    """The name of P's network that no VM is in."""
    rule: str
    """The id of the firewall rule of P's network."""
    failed: str
    """The id of a failed strand, for an operator to retry."""
    markers: dict[str, tuple[str, ...]]
    """For each project's word, what betrays its data: the word, and its key's fingerprint."""

    def headers(self, who: Who) -> dict[str, str]:
        if who is Who.ANONYMOUS:
            return {}
        return {"Authorization": f"Bearer {self.secrets[who]}"}

    def _code(self, who: Who, *, enable: bool) -> str:
        """Enrol the caller's user in TOTP (and turn it on); a current code."""
        if who is Who.ANONYMOUS:
            return "000000"
        with self.db.transaction() as session:
            user = session.get(User, self.users[who])
            assert user is not None
            seed = accounts.begin_totp(session, self.box, user)
            user.totp_enabled = enable
        return pyotp.TOTP(seed).now()

    def enrolling_code(self, who: Who) -> str:
        return self._code(who, enable=False)

    def enabled_code(self, who: Who) -> str:
        return self._code(who, enable=True)

    def invited(self, who: Who) -> str:
        """The id of a new invitation of the caller's (the newcomer's, for nobody) to a
        project of its own, which has no other members and none of P's, Q's or S's
        words in its name."""
        email = self.newcomer_email if who is Who.ANONYMOUS else self.emails[who]
        with self.db.transaction() as session:
            project = Project(id=new_id(), name=f"guild-{self.n}")
            invitation = Invitation(
                id=new_id(),
                project_id=project.id,
                email=email,
                role=Role.MEMBER,
                expires_at=now() + timedelta(days=7),
            )
            session.add(project)
            session.flush()
            session.add(invitation)
        return format_id(Kind.INVITATION, invitation.id)


def build_world(db: Database, box: SecretBox, n: int) -> World:
    """World number `n`: names carry `n`, so many worlds share one database."""
    hashed = _password_hash()
    with db.transaction() as session:

        def user(name: str, email: str, *, operator: bool = False) -> User:
            made = User(
                id=new_id(), name=name, email=email, password_hash=hashed, is_operator=operator
            )
            session.add(made)
            return made

        def project(name: str) -> Project:
            made = Project(id=new_id(), name=name)
            session.add(made)
            return made

        def token(user_id: UUID, name: str, project_id: UUID | None = None) -> tuple[UUID, str]:
            secret = tokens.PREFIX + secrets.token_urlsafe(32)
            made = ApiToken(
                id=new_id(),
                user_id=user_id,
                name=name,
                secret_sha256=tokens.digest(secret),
                project_id=project_id,
            )
            session.add(made)
            return made.id, secret

        people = {
            Who.VIEWER: user(f"{P}-viewer-{n}", f"viewer-{n}@{P}.test"),
            Who.MEMBER: user(f"{P}-member-{n}", f"member-{n}@{P}.test"),
            Who.ADMIN: user(f"{P}-admin-{n}", f"admin-{n}@{P}.test"),
            Who.OWNER: user(f"{P}-owner-{n}", f"owner-{n}@{P}.test"),
            Who.OUTSIDER: user(f"{Q}-outsider-{n}", f"outsider-{n}@{Q}.test"),
            Who.OPERATOR: user(f"operator-{n}", f"operator-{n}@example.test", operator=True),
        }
        sam = user(f"sam-{n}", f"sam-{n}@example.test", operator=True)
        target = user(f"{P}-target-{n}", f"target-{n}@{P}.test")
        newcomer = user(f"newcomer-{n}", f"newcomer-{n}@example.test")
        p, q, s = project(f"{P}-{n}"), project(f"{Q}-{n}"), project(f"{S}-{n}")
        session.flush()  # the rows below refer to these; the ORM does not know it
        session.add_all(
            Membership(project_id=where.id, user_id=whom.id, role=role)
            for where, whom, role in [
                (p, people[Who.VIEWER], Role.VIEWER),
                (p, people[Who.MEMBER], Role.MEMBER),
                (p, people[Who.ADMIN], Role.ADMIN),
                (p, people[Who.OWNER], Role.OWNER),
                (p, sam, Role.OWNER),
                (p, target, Role.VIEWER),
                (q, people[Who.OUTSIDER], Role.OWNER),
                (s, sam, Role.OWNER),
            ]
        )
        p_key = sshkey.parse(_public_key(f"{P}@laptop"))
        q_key = sshkey.parse(_public_key(f"{Q}@desk"))
        key_id = new_id()
        session.add_all(
            SshKey(
                id=key, project_id=where.id, name=name, public_key=k.line, fingerprint=k.fingerprint
            )
            for key, where, name, k in [
                (key_id, p, f"{P}-laptop", p_key),
                (new_id(), q, f"{Q}-desk", q_key),
            ]
        )

        session.add_all(
            [Image(project_id=p.id, name=f"{P}-img-{n}"), Image(project_id=None, name=f"pub-{n}")]
        )
        rule = _vm_in(session, p, n)
        failed = Strand(
            prog="tests.integration.api:Nothing", label="start", stack=[],
            status=StrandStatus.FAILED, tries=10, last_error="RuntimeError: no",
        )  # fmt: skip
        session.add(failed)
        invitation = Invitation(
            id=new_id(),
            project_id=p.id,
            email=f"invitee-{n}@{P}.test",
            role=Role.VIEWER,
            expires_at=now() + timedelta(days=7),
        )
        session.add(invitation)

        users = {who: person.id for who, person in people.items()}
        users[Who.SCOPED] = users[Who.ELSEWHERE] = sam.id
        secret_of = {who: token(person.id, "test")[1] for who, person in people.items()}
        secret_of[Who.SCOPED] = token(sam.id, "in-p", p.id)[1]
        secret_of[Who.ELSEWHERE] = token(sam.id, "in-s", s.id)[1]
        spare_of = {user_id: token(user_id, "spare")[0] for user_id in {*users.values()}}
        deploy, _ = token(people[Who.MEMBER].id, "deploy", p.id)

    return World(
        db=db,
        box=box,
        n=n,
        project=format_id(Kind.PROJECT, p.id),
        users=users,
        emails={who: person.email for who, person in people.items()}
        | {Who.SCOPED: sam.email, Who.ELSEWHERE: sam.email},
        secrets=secret_of,
        spares={who: format_id(Kind.TOKEN, spare_of[uid]) for who, uid in users.items()},
        target=format_id(Kind.USER, target.id),
        sam=format_id(Kind.USER, sam.id),
        newcomer=format_id(Kind.USER, newcomer.id),
        newcomer_email=newcomer.email,
        invitation=format_id(Kind.INVITATION, invitation.id),
        deploy=format_id(Kind.TOKEN, deploy),
        key=format_id(Kind.SSH_KEY, key_id),
        image=f"{P}-img-{n}",
        location=f"loc-{n}",
        ready=f"{P}-ready-{n}",
        vm=f"{P}-vm-{n}",
        public_image=f"pub-{n}",
        network=f"{P}-net-{n}",
        spare=f"{P}-spare-{n}",
        rule=rule,
        failed=format_id(Kind.STRAND, failed.id),
        markers={P: (P, p_key.fingerprint), Q: (Q, q_key.fingerprint), S: (S,)},
    )


def _vm_in(session: Session, project: Project, n: int) -> str:
    """A location with one roomy host and an empty one (`empty-{n}`), an active image of
    P's, two networks of P's and a VM of P's on the roomy host, in the first network,
    which has a firewall rule; the rule's id."""
    location = locations.create(session, f"loc-{n}", f"2001:db8:{n:x}::/48", flooding="unicast")
    host, empty = (
        Host(
            location_id=location.id,
            name=name,
            credential_sha256=f"{n:063x}{number}",
            arch="x86_64",
            acceleration="tcg",
            underlay_address="fd00::1",
            cores=64,
            threads=64,
            memory_bytes=256 * 2**30,
            disk_bytes=2**40,
        )
        for number, name in enumerate((f"host-{n}", f"empty-{n}"))
    )
    image = Image(
        project_id=project.id,
        name=f"{P}-ready-{n}",
        state=ImageState.ACTIVE,
        size_bytes=2**20,
        virtual_size_bytes=2**30,
        sha256="ab" * 32,
    )
    session.add_all([host, empty, image])
    session.flush()
    session.add_all(
        Subnet(location_id=location.id, number=number, host_id=each.id)
        for number, each in enumerate((host, empty), start=1)
    )
    order = vms.Order(
        project_id=project.id,
        name=f"{P}-vm-{n}",
        location_id=location.id,
        image=image,
        cores=1,
        memory_bytes=2**30,
        disk_bytes=2**30,
        ssh_keys=[],
        user_data=None,
        group=None,
        networks=[
            networks.create(session, project.id, location, f"{P}-net-{n}", Ipam.AUTO).network
        ],
    )
    networks.create(session, project.id, location, f"{P}-spare-{n}", Ipam.NONE)
    VmNexus.assemble(session, order, Policy.SPREAD)
    rule = firewall.add(
        session, project.id, firewall.check("tcp", "22", None), vm=None, network=order.networks[0]
    )
    return format_id(Kind.FIREWALL_RULE, rule.id)


@dataclass(frozen=True)
class Call:
    """One request: the path with its parameters filled in, and the body."""

    path: str
    json: Any = None
    content: bytes | None = None
    """A raw body, for a file upload."""


@dataclass(frozen=True)
class Case:
    """One row of the table: a request to a route, and the status each caller gets."""

    method: str
    route: str
    statuses: Statuses
    call: Callable[[World, Who], Call]
    label: str = ""

    def __str__(self) -> str:
        return f"{self.method} {self.route}" + (f" ({self.label})" if self.label else "")


def _login(world: World, who: Who) -> Call:
    email = world.newcomer_email if who is Who.ANONYMOUS else world.emails[who]
    return Call("/v1/auth/token", {"email": email, "password": PASSWORD})


def _spare(world: World, who: Who) -> Call:
    return Call(f"/v1/tokens/{world.spares.get(who, world.spares[Who.VIEWER])}")


def _p(suffix: str = "", json: Any = None) -> Callable[[World, Who], Call]:
    """A call on P's `suffix`, in which `{...}` names a field of the world."""

    def call(world: World, _who: Who) -> Call:
        filled = suffix.format(**vars(world))
        return Call(f"/v1/projects/{world.project}{filled}", json)

    return call


def _fixed(path: str, json: Any = None) -> Callable[[World, Who], Call]:
    def call(world: World, _who: Who) -> Call:
        return Call(path.format(**vars(world)), json)

    return call


@cache
def _qcow2() -> bytes:
    """A small, valid image file to upload."""
    with TemporaryDirectory() as scratch:
        path = Path(scratch) / "disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
        return path.read_bytes()


def _add_key(world: World, _who: Who) -> Call:
    body = {"name": "fresh", "public_key": _public_key("fresh@laptop")}
    return Call(f"/v1/projects/{world.project}/ssh-keys", body)


def _invite(role: Role) -> Callable[[World, Who], Call]:
    def call(world: World, _who: Who) -> Call:
        body = {"email": world.newcomer_email, "role": role.value}
        return Call(f"/v1/projects/{world.project}/invitations", body)

    return call


def _answer(action: str) -> Callable[[World, Who], Call]:
    """Accept or decline an invitation made for the caller."""

    def call(world: World, who: Who) -> Call:
        return Call(f"/v1/invitations/{world.invited(who)}/{action}")

    return call


# fmt: off
#  anonymous, viewer, member, admin, owner, outsider, operator, scoped, elsewhere
CASES = [
    Case("GET", "/v1/health",
         (200, 200, 200, 200, 200, 200, 200, 200, 200), _fixed("/v1/health")),
    Case("POST", "/v1/auth/token",
         (201, 201, 201, 201, 201, 201, 201, 201, 201), _login),
    Case("DELETE", "/v1/auth/token",
         (401, 204, 204, 204, 204, 204, 204, 204, 204), _fixed("/v1/auth/token")),
    Case("GET", "/v1/users/me",
         (401, 200, 200, 200, 200, 200, 200, 200, 200), _fixed("/v1/users/me")),
    Case("POST", "/v1/users/me/totp",
         (401, 201, 201, 201, 201, 201, 201, 403, 403), _fixed("/v1/users/me/totp")),
    Case("POST", "/v1/users/me/totp/confirm",
         (401, 200, 200, 200, 200, 200, 200, 403, 403),
         lambda w, who: Call("/v1/users/me/totp/confirm", {"code": w.enrolling_code(who)})),
    Case("POST", "/v1/users/me/totp/disable",
         (401, 200, 200, 200, 200, 200, 200, 403, 403),
         lambda w, who: Call("/v1/users/me/totp/disable", {"code": w.enabled_code(who)})),
    Case("GET", "/v1/projects",
         (401, 200, 200, 200, 200, 200, 200, 200, 200), _fixed("/v1/projects")),
    Case("POST", "/v1/projects",
         (401, 201, 201, 201, 201, 201, 201, 403, 403),
         lambda w, _who: Call("/v1/projects", {"name": f"fresh-{w.n}"})),
    Case("GET", "/v1/projects/{project}",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p()),
    Case("DELETE", "/v1/projects/{project}",
         (401, 403, 403, 403, 409, 404, 404, 409, 404), _p(), "with a VM"),
    Case("GET", "/v1/projects/{project}/members",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/members")),
    Case("GET", "/v1/projects/{project}/invitations",
         (401, 403, 403, 200, 200, 404, 404, 200, 404), _p("/invitations")),
    Case("POST", "/v1/projects/{project}/invitations",
         (401, 403, 403, 201, 201, 404, 404, 201, 404), _invite(Role.MEMBER)),
    Case("POST", "/v1/projects/{project}/invitations",
         (401, 403, 403, 403, 201, 404, 404, 201, 404), _invite(Role.OWNER), "as an owner"),
    Case("DELETE", "/v1/projects/{project}/invitations/{invitation}",
         (401, 403, 403, 204, 204, 404, 404, 204, 404), _p("/invitations/{invitation}")),
    Case("GET", "/v1/invitations",
         (401, 200, 200, 200, 200, 200, 200, 403, 403), _fixed("/v1/invitations")),
    Case("POST", "/v1/invitations/{invitation}/accept",
         (401, 200, 200, 200, 200, 200, 200, 403, 403), _answer("accept")),
    Case("POST", "/v1/invitations/{invitation}/decline",
         (401, 204, 204, 204, 204, 204, 204, 403, 403), _answer("decline")),
    Case("PATCH", "/v1/projects/{project}/members/{user}",
         (401, 403, 403, 200, 200, 404, 404, 200, 404),
         _p("/members/{target}", {"role": "member"})),
    Case("PATCH", "/v1/projects/{project}/members/{user}",
         (401, 403, 403, 403, 200, 404, 404, 200, 404),
         _p("/members/{target}", {"role": "owner"}), "to owner"),
    Case("PATCH", "/v1/projects/{project}/members/{user}",
         (401, 403, 403, 403, 200, 404, 404, 200, 404),
         _p("/members/{sam}", {"role": "admin"}), "an owner"),
    Case("DELETE", "/v1/projects/{project}/members/{user}",
         (401, 403, 403, 204, 204, 404, 404, 204, 404), _p("/members/{target}")),
    Case("DELETE", "/v1/projects/{project}/members/{user}",
         (401, 403, 403, 403, 204, 404, 404, 204, 404), _p("/members/{sam}"), "an owner"),
    Case("GET", "/v1/tokens",
         (401, 200, 200, 200, 200, 200, 200, 403, 403), _fixed("/v1/tokens")),
    Case("POST", "/v1/tokens",
         (401, 201, 201, 201, 201, 201, 201, 403, 403), _fixed("/v1/tokens", {"name": "more"})),
    Case("POST", "/v1/tokens",
         (401, 201, 201, 201, 201, 404, 404, 403, 403),
         lambda w, _who: Call("/v1/tokens", {"name": "more", "project": w.project}),
         "scoped to P"),
    Case("DELETE", "/v1/tokens/{token}",
         (401, 204, 204, 204, 204, 204, 204, 403, 403), _spare),
    Case("GET", "/v1/projects/{project}/tokens",
         (401, 403, 403, 200, 200, 404, 404, 200, 404), _p("/tokens")),
    Case("DELETE", "/v1/projects/{project}/tokens/{token}",
         (401, 403, 403, 204, 204, 404, 404, 204, 404), _p("/tokens/{deploy}")),
    Case("GET", "/v1/projects/{project}/ssh-keys",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/ssh-keys")),
    Case("POST", "/v1/projects/{project}/ssh-keys",
         (401, 403, 201, 201, 201, 404, 404, 201, 404), _add_key),
    Case("GET", "/v1/projects/{project}/ssh-keys/{key}",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/ssh-keys/{key}")),
    Case("DELETE", "/v1/projects/{project}/ssh-keys/{key}",
         (401, 403, 204, 204, 204, 404, 404, 204, 404), _p("/ssh-keys/{key}")),
    Case("GET", "/v1/admin/users",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/users")),
    Case("POST", "/v1/admin/users",
         (401, 403, 403, 403, 403, 403, 201, 403, 403),
         lambda w, _who: Call("/v1/admin/users", {
             "name": f"made-{w.n}", "email": f"made-{w.n}@example.test", "password": PASSWORD,
         })),
    Case("GET", "/v1/admin/users/{user}",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/users/{target}")),
    Case("PATCH", "/v1/admin/users/{user}",
         (401, 403, 403, 403, 403, 403, 200, 403, 403),
         _fixed("/v1/admin/users/{target}", {"disabled": True})),
    Case("GET", "/v1/admin/audit",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/audit")),
    Case("GET", "/v1/projects/{project}/images",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/images")),
    Case("POST", "/v1/projects/{project}/images",
         (401, 403, 201, 201, 201, 404, 404, 201, 404), _p("/images", {"name": "fresh"})),
    Case("PUT", "/v1/projects/{project}/images/{image}/file",
         (401, 403, 200, 200, 200, 404, 404, 200, 404),
         lambda w, _who: Call(f"/v1/projects/{w.project}/images/{w.image}/file",
                              content=_qcow2())),
    Case("GET", "/v1/projects/{project}/images/{image}",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/images/{image}")),
    Case("DELETE", "/v1/projects/{project}/images/{image}",
         (401, 403, 204, 204, 204, 404, 404, 204, 404), _p("/images/{image}")),
    Case("GET", "/v1/admin/images",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/images")),
    Case("POST", "/v1/admin/images",
         (401, 403, 403, 403, 403, 403, 201, 403, 403),
         lambda w, _who: Call("/v1/admin/images", {"name": f"fresh-{w.n}"})),
    Case("PUT", "/v1/admin/images/{image}/file",
         (401, 403, 403, 403, 403, 403, 200, 403, 403),
         lambda w, _who: Call(f"/v1/admin/images/{w.public_image}/file", content=_qcow2())),
    Case("DELETE", "/v1/admin/images/{image}",
         (401, 403, 403, 403, 403, 403, 204, 403, 403), _fixed("/v1/admin/images/{public_image}")),
    Case("GET", "/v1/projects/{project}/vms",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/vms")),
    Case("POST", "/v1/projects/{project}/vms",
         (401, 403, 202, 202, 202, 404, 404, 202, 404),
         lambda w, _who: Call(f"/v1/projects/{w.project}/vms", {
             "name": "fresh", "image": w.ready, "location": w.location, "memory": "1G"})),
    Case("GET", "/v1/projects/{project}/vms/{vm}",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/vms/{vm}")),
    Case("GET", "/v1/projects/{project}/vms/{vm}/events",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/vms/{vm}/events")),
    Case("GET", "/v1/projects/{project}/vms/{vm}/console",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/vms/{vm}/console")),
    # The world's VM has not run: whoever may change it is told so (409).
    Case("POST", "/v1/projects/{project}/vms/{vm}/console-tickets",
         (401, 403, 409, 409, 409, 404, 404, 409, 404),
         lambda w, _who: Call(f"/v1/projects/{w.project}/vms/{w.vm}/console-tickets", {
             "kind": "serial"})),
    Case("POST", "/v1/projects/{project}/vms/{vm}/start",
         (401, 403, 202, 202, 202, 404, 404, 202, 404), _p("/vms/{vm}/start")),
    Case("POST", "/v1/projects/{project}/vms/{vm}/stop",
         (401, 403, 202, 202, 202, 404, 404, 202, 404), _p("/vms/{vm}/stop")),
    Case("POST", "/v1/projects/{project}/vms/{vm}/reboot",
         (401, 403, 202, 202, 202, 404, 404, 202, 404), _p("/vms/{vm}/reboot")),
    Case("DELETE", "/v1/projects/{project}/vms/{vm}",
         (401, 403, 202, 202, 202, 404, 404, 202, 404), _p("/vms/{vm}")),
    Case("POST", "/v1/projects/{project}/vms/{vm}/nics",
         (401, 403, 202, 202, 202, 404, 404, 202, 404),
         lambda w, _who: Call(f"/v1/projects/{w.project}/vms/{w.vm}/nics", {
             "network": w.spare})),
    Case("DELETE", "/v1/projects/{project}/vms/{vm}/nics/{network}",
         (401, 403, 202, 202, 202, 404, 404, 202, 404), _p("/vms/{vm}/nics/{network}")),
    Case("GET", "/v1/projects/{project}/networks",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/networks")),
    Case("POST", "/v1/projects/{project}/networks",
         (401, 403, 201, 201, 201, 404, 404, 201, 404),
         lambda w, _who: Call(f"/v1/projects/{w.project}/networks", {
             "name": "fresh", "location": w.location})),
    Case("GET", "/v1/projects/{project}/networks/{network}",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/networks/{network}")),
    Case("DELETE", "/v1/projects/{project}/networks/{network}",
         (401, 403, 204, 204, 204, 404, 404, 204, 404), _p("/networks/{spare}")),
    Case("GET", "/v1/projects/{project}/firewall-rules",
         (401, 200, 200, 200, 200, 404, 404, 200, 404), _p("/firewall-rules")),
    Case("POST", "/v1/projects/{project}/firewall-rules",
         (401, 403, 201, 201, 201, 404, 404, 201, 404),
         lambda w, _who: Call(f"/v1/projects/{w.project}/firewall-rules", {
             "network": w.network, "protocol": "tcp", "port": "443"})),
    Case("DELETE", "/v1/projects/{project}/firewall-rules/{rule}",
         (401, 403, 204, 204, 204, 404, 404, 204, 404), _p("/firewall-rules/{rule}")),
    Case("GET", "/v1/admin/images/{image}",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/images/{public_image}")),
    Case("GET", "/v1/admin/locations",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/locations")),
    Case("POST", "/v1/admin/locations",
         (401, 403, 403, 403, 403, 403, 201, 403, 403),
         lambda w, _who: Call("/v1/admin/locations", {
             "name": f"new-{w.n}", "prefix": "2001:db8:ffff::/48"})),
    Case("GET", "/v1/admin/locations/{location}",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/locations/{location}")),
    Case("PATCH", "/v1/admin/locations/{location}",
         (401, 403, 403, 403, 403, 403, 200, 403, 403),
         _fixed("/v1/admin/locations/{location}", {"flooding": "multicast"})),
    Case("POST", "/v1/admin/locations/{location}/join-tokens",
         (401, 403, 403, 403, 403, 403, 201, 403, 403),
         _fixed("/v1/admin/locations/{location}/join-tokens", {"expires_in": "10m"})),
    Case("GET", "/v1/admin/hosts",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/hosts")),
    Case("GET", "/v1/admin/hosts/{host}",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/hosts/host-{n}")),
    Case("PATCH", "/v1/admin/hosts/{host}",
         (401, 403, 403, 403, 403, 403, 200, 403, 403),
         _fixed("/v1/admin/hosts/host-{n}", {"cpu_ratio": 2.0})),
    Case("DELETE", "/v1/admin/hosts/{host}",
         (401, 403, 403, 403, 403, 403, 204, 403, 403), _fixed("/v1/admin/hosts/empty-{n}")),
    Case("GET", "/v1/admin/hosts/{host}/events",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/hosts/host-{n}/events")),
    Case("POST", "/v1/admin/hosts/{host}/drain",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/hosts/host-{n}/drain")),
    Case("POST", "/v1/admin/hosts/{host}/undrain",
         (401, 403, 403, 403, 403, 403, 200, 403, 403),
         _fixed("/v1/admin/hosts/host-{n}/undrain")),
    Case("POST", "/v1/admin/hosts/{host}/maintenance",
         (401, 403, 403, 403, 403, 403, 200, 403, 403),
         _fixed("/v1/admin/hosts/host-{n}/maintenance")),
    Case("POST", "/v1/admin/hosts/{host}/evacuate",
         (401, 403, 403, 403, 403, 403, 202, 403, 403),
         _fixed("/v1/admin/hosts/host-{n}/evacuate")),
    Case("GET", "/v1/admin/counters",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/counters")),
    Case("GET", "/v1/admin/strands",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/strands")),
    Case("GET", "/v1/admin/strands/{strand}",
         (401, 403, 403, 403, 403, 403, 200, 403, 403), _fixed("/v1/admin/strands/{failed}")),
    Case("POST", "/v1/admin/strands/{strand}/retry",
         (401, 403, 403, 403, 403, 403, 200, 403, 403),
         _fixed("/v1/admin/strands/{failed}/retry")),
    # Hosts, not people, call the agent API: no user's token opens it.
    Case("POST", "/v1/agent/register",
         (401, 401, 401, 401, 401, 401, 401, 401, 401),
         _fixed("/v1/agent/register", {"join_token": "nubis_join_bogus", "host": {
             "name": "h1", "arch": "x86_64", "cores": 2, "threads": 2, "memory_bytes": 2**30,
             "hugepages": 0, "disk_bytes": 2**30, "underlay_address": "fd00::1",
             "acceleration": "tcg"}})),
    Case("POST", "/v1/agent/heartbeat",
         (401, 401, 401, 401, 401, 401, 401, 401, 401), _fixed("/v1/agent/heartbeat", {})),
    Case("GET", "/v1/agent/desired",
         (401, 401, 401, 401, 401, 401, 401, 401, 401), _fixed("/v1/agent/desired")),
    Case("POST", "/v1/agent/status",
         (401, 401, 401, 401, 401, 401, 401, 401, 401),
         _fixed("/v1/agent/status", {"revision": 0, "vms": []})),
    Case("GET", "/v1/agent/images/{image}",
         (401, 401, 401, 401, 401, 401, 401, 401, 401),
         _fixed("/v1/agent/images/img-00000000000000000000000000")),
]
# fmt: on

PROBLEM_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}
"""The problem `code` that goes with each refusal."""


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every method and path the app answers, but the OpenAPI document and its viewer's."""
    document = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    found = set()
    for route in iter_route_contexts(app.routes):
        if route.path is None or route.path in document:
            continue
        methods = route.methods or set()
        found |= {
            (method, route.path) for method in methods if method != "HEAD" or "GET" not in methods
        }
    return found


@pytest.fixture
def blank_app(tmp_path: Path) -> FastAPI:
    """An app to list the routes of; it is never called."""
    return create_app(Database.connect("sqlite://"), SecretBox.from_file(tmp_path / "secret.key"))


def test_the_table_has_a_row_for_every_route_of_the_app(blank_app: FastAPI) -> None:
    tabled = {(case.method, case.route) for case in CASES}
    routes = _routes(blank_app)
    assert routes - tabled == set(), "add a row to CASES for each new route"
    assert tabled - routes == set(), "these rows name routes the app does not have"


def _leaks(world: World, who: Who, path: str, text: str) -> list[str]:
    """The markers of other projects' data in an answer to `who`."""
    if who is Who.OPERATOR and path.startswith("/v1/admin/"):
        return []
    return [
        marker
        for project in BLIND_TO[who]
        for marker in world.markers[project]
        if marker.lower() in text.lower()
    ]


def _ask(client: TestClient, world: World, case: Case, who: Who) -> list[str]:
    """What is wrong with the answer to `who` calling `case`: nothing, if it is right."""
    call = case.call(world, who)
    headers = world.headers(who)
    response = client.request(
        case.method, call.path, json=call.json, content=call.content, headers=headers
    )
    expected = dict(zip(Who, case.statuses, strict=True))[who]
    said = f"{case} as {who}: {response.status_code} {response.text[:200]}"
    wrong = [f"{said}: leaks {marker!r}" for marker in _leaks(world, who, call.path, response.text)]
    if response.status_code != expected:
        return [*wrong, f"{said}: expected {expected}"]
    if expected in PROBLEM_CODES and response.json()["code"] != PROBLEM_CODES[expected]:
        wrong.append(f"{said}: expected the code {PROBLEM_CODES[expected]}")
    if expected == 404 and world.project in call.path:
        # Not being in a project looks exactly like the project not existing.
        ghost = format_id(Kind.PROJECT, new_id())
        path = call.path.replace(world.project, ghost)
        answer = client.request(
            case.method, path, json=call.json, content=call.content, headers=headers
        )
        if answer.text.replace(ghost, world.project) != response.text:
            wrong.append(f"{said}: a project that does not exist gets {answer.text[:200]}")
    return wrong


def test_every_route_answers_each_caller_as_the_rules_say_and_shows_no_other_project(
    client: TestClient, db: Database, box: SecretBox
) -> None:
    numbers = itertools.count()
    shared = build_world(db, box, next(numbers))
    wrong = []
    for case in CASES:
        for who in Who:
            # A request that may change things gets a world of its own.
            world = shared if case.method == "GET" else build_world(db, box, next(numbers))
            wrong += _ask(client, world, case, who)
    assert not wrong, "\n".join(wrong)


def test_a_scoped_token_lists_only_its_project(
    client: TestClient, db: Database, box: SecretBox
) -> None:
    world = build_world(db, box, 0)

    def names(who: Who) -> list[str]:
        response = client.get("/v1/projects", headers=world.headers(who))
        assert response.status_code == 200, response.text
        return [project["name"] for project in response.json()["items"]]

    assert names(Who.SCOPED) == [f"{P}-0"]
    assert names(Who.ELSEWHERE) == [f"{S}-0"]
