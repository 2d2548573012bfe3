"""`nubis token …`: your API tokens, for scripts and CI."""

from __future__ import annotations

from typing import Annotated

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import part, signed_in
from nubis.cli.output import JsonOption, console, listing, show

token_app = typer.Typer(help="Your API tokens.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    name: str,
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Let it act in this project only.")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 12h, 30d (default: never expires).")
    ] = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Create a token; its secret is shown this once."""
    client, _ = signed_in(profile)
    created = client.post(
        "/v1/tokens", {"name": name, "project": project, "expires_in": expires_in}
    )
    show(created, as_json)
    if not as_json:
        console.print("The secret is shown only now: keep it somewhere safe.")


@token_app.command("list")
def token_list(as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    """Your live tokens (secrets are never shown again)."""
    client, _ = signed_in(profile)
    listing(
        client.every("/v1/tokens"),
        ["name", "id", "project", "expires_at", "created_at"],
        as_json,
    )


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="The token's id, or its name if unique.")],
    profile: ProfileOption = None,
) -> None:
    client, _ = signed_in(profile)
    client.delete(f"/v1/tokens/{part(token)}")
    console.print(f"Revoked {token}.")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
