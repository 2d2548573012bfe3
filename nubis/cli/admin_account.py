"""`nubis admin user …` and `nubis admin audit`: accounts, straight in the database, so
the first operator can be made before there is anyone to ask the API.
"""

from __future__ import annotations

import secrets
import sys
from typing import Annotated, Any

import typer
from sqlalchemy import select

from nubis.auth import accounts
from nubis.cli.output import JsonOption, console, listing
from nubis.cli.store import database
from nubis.errors import NotFound
from nubis.ids import Kind, format_id
from nubis.models import AuditEvent, User
from nubis.names import ref_clause

user_app = typer.Typer(help="User accounts.", no_args_is_help=True)


def _user(user: User) -> dict[str, Any]:
    return {
        "id": format_id(Kind.USER, user.id),
        "name": user.name,
        "email": user.email,
        "operator": user.is_operator,
        "totp": user.totp_enabled,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
    }


@user_app.command("create")
def user_create(
    name: str,
    email: Annotated[str, typer.Option(help="Their email: the login name.")],
    operator: Annotated[bool, typer.Option(help="Make them an operator.")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user; without --password-stdin a password is made and shown once."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else secrets.token_urlsafe(12)
    with database() as db, db.transaction() as session:
        user = accounts.create_user(session, name, email, password, operator=operator)
        summary = _user(user)
    console.print(f"Created user {summary['name']} ({summary['email']}, {summary['id']}).")
    if not password_stdin:
        console.print(f"Password: {password} (shown only now)")


@user_app.command("list")
def user_list(as_json: JsonOption = False) -> None:
    with database() as db, db.reading() as session:
        users = [_user(u) for u in session.scalars(select(User).order_by(User.id))]
    listing(users, ["name", "email", "operator", "totp", "disabled", "id"], as_json)


def _set_disabled(ref: str, disabled: bool) -> None:
    with database() as db, db.transaction() as session:
        user = session.scalars(
            select(User).where(ref_clause(Kind.USER, User.id, User.name, ref))
        ).one_or_none()
        if user is None:
            raise NotFound(f"no user {ref!r}")
        user.disabled = disabled
    state = "disabled: their tokens no longer work" if disabled else "enabled"
    console.print(f"User {ref} is {state}.")


@user_app.command("disable")
def user_disable(user: Annotated[str, typer.Argument(help="Name or id.")]) -> None:
    """Disable a user: their tokens stop working at once and they cannot log in."""
    _set_disabled(user, True)


@user_app.command("enable")
def user_enable(user: Annotated[str, typer.Argument(help="Name or id.")]) -> None:
    _set_disabled(user, False)


def audit(
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. login.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The audit log, newest first: every login, whether it succeeded or not."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with database() as db, db.reading() as session:
        events = [
            {
                "at": e.at.isoformat(timespec="seconds"),
                "action": e.action,
                "outcome": e.outcome,
                "email": e.email,
                "source": e.source,
                "detail": e.detail,
                "user": format_id(Kind.USER, e.user_id) if e.user_id else None,
            }
            for e in session.scalars(query)
        ]
    listing(events, ["at", "action", "outcome", "email", "source", "detail"], as_json)
