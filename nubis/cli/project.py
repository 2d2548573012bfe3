"""`nubis project …`, `nubis member …` and `nubis invitation …`: projects, who is in them,
and who is invited to join."""

from __future__ import annotations

from typing import Annotated

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import part, project_of, signed_in
from nubis.cli.output import JsonOption, console, listing, show
from nubis.cli.profile import Config
from nubis.roles import Role

project_app = typer.Typer(help="Projects: what every resource belongs to.", no_args_is_help=True)
member_app = typer.Typer(help="Members of a project and their roles.", no_args_is_help=True)
invitation_app = typer.Typer(
    help="Invitations: yours to accept or decline, and a project's pending ones.",
    no_args_is_help=True,
)

ProjectOption = Annotated[
    str | None,
    typer.Option("--project", "-p", help="The project (default: `nubis project use`'s)."),
]


@project_app.command("create")
def project_create(name: str, as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    """Create a project; you become its owner."""
    client, _ = signed_in(profile)
    show(client.post("/v1/projects", {"name": name}), as_json)


@project_app.command("list")
def project_list(as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    client, _ = signed_in(profile)
    listing(client.every("/v1/projects"), ["name", "role", "id", "created_at"], as_json)


@project_app.command("show")
def project_show(
    name: Annotated[
        str | None, typer.Argument(help="Name or id (default: the one in use).")
    ] = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    client, chosen = signed_in(profile)
    show(client.get(f"/v1/projects/{part(project_of(chosen, name))}"), as_json)


@project_app.command("delete")
def project_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    profile: ProfileOption = None,
) -> None:
    """Delete a project with its members, SSH keys and scoped tokens (owners only)."""
    client, _ = signed_in(profile)
    if not yes:
        typer.confirm(f"Delete project {name} and everything in it?", abort=True)
    client.delete(f"/v1/projects/{part(name)}")
    console.print(f"Deleted project {name}.")


@project_app.command("use")
def project_use(name: str, profile: ProfileOption = None) -> None:
    """Work in this project from now on (kept in the profile)."""
    client, chosen = signed_in(profile)
    found = client.get(f"/v1/projects/{part(name)}")
    config = Config.load()
    config.update(chosen.name, project=found["name"])
    config.save()
    console.print(f"Using project {found['name']} (your role: {found['role']}).")


MEMBER_COLUMNS = ["name", "email", "role", "user", "added_at"]


@member_app.command("add")
def member_add(
    email: Annotated[str, typer.Argument(help="The email address of their account.")],
    role: Annotated[Role, typer.Option(help="Their role once they accept.")] = Role.MEMBER,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Invite someone to the project (admins and owners); they join when they accept."""
    client, chosen = signed_in(profile)
    invited = client.post(
        f"/v1/projects/{part(project_of(chosen, project))}/invitations",
        {"email": email, "role": role},
    )
    show(invited, as_json)
    if not as_json:
        console.print(
            f"Invited {invited['email']}: they join with `nubis invitation accept "
            f"{invited['id']}` (within 7 days)."
        )


@member_app.command("list")
def member_list(
    project: ProjectOption = None, as_json: JsonOption = False, profile: ProfileOption = None
) -> None:
    client, chosen = signed_in(profile)
    members = client.every(f"/v1/projects/{part(project_of(chosen, project))}/members")
    listing(members, MEMBER_COLUMNS, as_json)


@member_app.command("rm")
def member_rm(
    user: Annotated[str, typer.Argument(help="The user's name, email or id.")],
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Remove someone from the project (admins and owners)."""
    client, chosen = signed_in(profile)
    name = project_of(chosen, project)
    client.delete(f"/v1/projects/{part(name)}/members/{part(user)}")
    console.print(f"Removed {user} from {name}.")


INVITATION_COLUMNS = ["project_name", "role", "email", "invited_by", "expires_at", "id"]


@invitation_app.command("list")
def invitation_list(
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="List this project's pending invitations instead."),
    ] = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Your pending invitations; with --project, the project's (admins)."""
    client, _ = signed_in(profile)
    path = f"/v1/projects/{part(project)}/invitations" if project else "/v1/invitations"
    listing(client.every(path), INVITATION_COLUMNS, as_json)


@invitation_app.command("accept")
def invitation_accept(
    invitation: Annotated[str, typer.Argument(help="The invitation's id (inv-…).")],
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Join the project with the role it offers."""
    client, _ = signed_in(profile)
    joined = client.post(f"/v1/invitations/{part(invitation)}/accept")
    if as_json:
        show(joined, as_json)
        return
    console.print(f"You are in project {joined['name']} now, as {joined['role']}.")


@invitation_app.command("decline")
def invitation_decline(
    invitation: Annotated[str, typer.Argument(help="The invitation's id (inv-…).")],
    profile: ProfileOption = None,
) -> None:
    client, _ = signed_in(profile)
    client.post(f"/v1/invitations/{part(invitation)}/decline")
    console.print(f"Declined {invitation}.")


@invitation_app.command("revoke")
def invitation_revoke(
    invitation: Annotated[str, typer.Argument(help="The invitation's id (inv-…).")],
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Withdraw one of the project's pending invitations (admins and owners)."""
    client, chosen = signed_in(profile)
    name = project_of(chosen, project)
    client.delete(f"/v1/projects/{part(name)}/invitations/{part(invitation)}")
    console.print(f"Revoked {invitation} to {name}.")


def register(app: typer.Typer) -> None:
    app.add_typer(project_app, name="project")
    app.add_typer(member_app, name="member")
    app.add_typer(invitation_app, name="invitation")
