"""`nubis admin user …` and `nubis admin audit`: accounts and the audit log, clients of
`/v1/admin/users` and `/v1/admin/audit`; and `nubis admin bootstrap`, the one account
made straight in the database: the first operator, before there is anyone to ask the API.
"""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import client_of, part
from nubis.cli.output import JsonOption, console, listing
from nubis.errors import Conflict

user_app = typer.Typer(help="User accounts.", no_args_is_help=True)

EmailOption = Annotated[str, typer.Option(help="Their email: the login name.")]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin.")
]


def _password(from_stdin: bool) -> str:
    return sys.stdin.readline().rstrip("\n") if from_stdin else secrets.token_urlsafe(12)


def _made(name: str, email: str, user_id: str, password: str, from_stdin: bool) -> None:
    console.print(f"Created user {name} ({email}, {user_id}).")
    if not from_stdin:
        console.print(f"Password: {password} (shown only now)")


@user_app.command("create")
def user_create(
    name: str,
    email: EmailOption,
    operator: Annotated[bool, typer.Option(help="Make them an operator.")] = False,
    password_stdin: PasswordStdinOption = False,
    profile: ProfileOption = None,
) -> None:
    """Create a user; without --password-stdin a password is made and shown once."""
    client = client_of(profile)
    password = _password(password_stdin)
    body = {"name": name, "email": email, "password": password, "operator": operator}
    user = client.post("/v1/admin/users", body)
    _made(user["name"], user["email"], user["id"], password, password_stdin)


@user_app.command("list")
def user_list(as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    users = client_of(profile).every("/v1/admin/users")
    listing(users, ["name", "email", "is_operator", "totp_enabled", "disabled", "id"], as_json)


def _set_disabled(ref: str, disabled: bool, profile: str | None) -> None:
    client_of(profile).patch(f"/v1/admin/users/{part(ref)}", {"disabled": disabled})
    state = "disabled: their tokens no longer work" if disabled else "enabled"
    console.print(f"User {ref} is {state}.")


@user_app.command("disable")
def user_disable(
    user: Annotated[str, typer.Argument(help="Name or id.")], profile: ProfileOption = None
) -> None:
    """Disable a user: their tokens stop working at once and they cannot log in."""
    _set_disabled(user, True, profile)


@user_app.command("enable")
def user_enable(
    user: Annotated[str, typer.Argument(help="Name or id.")], profile: ProfileOption = None
) -> None:
    _set_disabled(user, False, profile)


@user_app.command("operator")
def user_operator(
    user: Annotated[str, typer.Argument(help="Name or id.")],
    grant: Annotated[
        bool, typer.Option("--grant/--revoke", help="Make them an operator, or no longer.")
    ] = True,
    profile: ProfileOption = None,
) -> None:
    """Make a user an operator (or, with --revoke, no longer one)."""
    client_of(profile).patch(f"/v1/admin/users/{part(user)}", {"operator": grant})
    console.print(f"User {user} is {'an operator' if grant else 'not an operator'}.")


def audit(
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. login, admin.host.drain.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Only changes made to this id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """The audit log, newest first: every login, and every change an operator made or
    tried, whether it succeeded or not."""
    events = client_of(profile).first("/v1/admin/audit", limit, action=action, target=target)
    columns = ["at", "action", "outcome", "email", "source", "target", "detail"]
    listing(events, columns, as_json)


def bootstrap(
    name: str,
    email: EmailOption,
    password_stdin: PasswordStdinOption = False,
) -> None:
    """Make the first operator, straight in the database (NUBIS_DATABASE_URL, else the
    data dir's); refused once the store has any user: then an operator makes the others
    with `nubis admin user create`."""
    # The server side is loaded only here: every other admin command is an HTTP client.
    from sqlalchemy import select  # noqa: PLC0415

    from nubis.auth import accounts  # noqa: PLC0415
    from nubis.cli.store import database  # noqa: PLC0415
    from nubis.ids import Kind, format_id  # noqa: PLC0415
    from nubis.models import User  # noqa: PLC0415

    password = _password(password_stdin)
    with database() as db, db.transaction() as session:
        if session.scalar(select(User.id).limit(1)) is not None:
            raise Conflict(
                "the store has users already: an operator makes more with "
                "`nubis admin user create` (through the API)"
            )
        user = accounts.create_user(session, name, email, password, operator=True)
        user_id = format_id(Kind.USER, user.id)
    _made(name, email, user_id, password, password_stdin)
