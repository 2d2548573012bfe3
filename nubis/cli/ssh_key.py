"""`nubis ssh-key …`: the project's SSH public keys, given to its VMs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import part, project_of, signed_in
from nubis.cli.output import JsonOption, console, listing, show
from nubis.cli.project import ProjectOption
from nubis.errors import InvalidInput

ssh_key_app = typer.Typer(help="SSH public keys of a project.", no_args_is_help=True)


@ssh_key_app.command("add")
def ssh_key_add(
    name: str,
    path: Annotated[Path, typer.Argument(help="The public key file, e.g. ~/.ssh/id_ed25519.pub")],
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Add a public key under a name."""
    client, chosen = signed_in(profile)
    try:
        text = path.expanduser().read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read {path}: {error}") from None
    added = client.post(
        f"/v1/projects/{part(project_of(chosen, project))}/ssh-keys",
        {"name": name, "public_key": text},
    )
    show(added, as_json)


@ssh_key_app.command("list")
def ssh_key_list(
    project: ProjectOption = None, as_json: JsonOption = False, profile: ProfileOption = None
) -> None:
    client, chosen = signed_in(profile)
    keys = client.every(f"/v1/projects/{part(project_of(chosen, project))}/ssh-keys")
    listing(keys, ["name", "fingerprint", "id", "created_at"], as_json)


@ssh_key_app.command("rm")
def ssh_key_rm(name: str, project: ProjectOption = None, profile: ProfileOption = None) -> None:
    client, chosen = signed_in(profile)
    client.delete(f"/v1/projects/{part(project_of(chosen, project))}/ssh-keys/{part(name)}")
    console.print(f"Removed SSH key {name}.")


def register(app: typer.Typer) -> None:
    app.add_typer(ssh_key_app, name="ssh-key")
