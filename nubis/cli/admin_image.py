"""`nubis admin image …`: public images, uploaded from files on the operator's machine
(streamed, as `nubis image upload` does), and the tiny guest image nubis builds from
Debian packages; a client of `/v1/admin/images`."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import Client, client_of, part
from nubis.cli.image import LoginUserOption, upload
from nubis.cli.output import JsonOption, console, fail, listing, show
from nubis.errors import Conflict, NotFound
from nubis.guestimage import BuildError, tiny
from nubis.guestimage.debian import DEB_CACHE
from nubis.names import check_name

image_app = typer.Typer(
    help="Public images: the ones every project can start VMs from.", no_args_is_help=True
)

PUBLIC = "/v1/admin/images"
COLUMNS = ["name", "id", "state", "size_bytes", "virtual_size_bytes", "vms", "created_at"]


def _added(image: dict[str, object]) -> str:
    return (
        f"Added public image {image['name']} ({image['id']}): {image['size_bytes']} bytes, "
        f"{image['virtual_size_bytes']} bytes virtual, sha256 {image['sha256']}."
    )


@image_app.command("add")
def image_add(
    file: Annotated[Path, typer.Argument(help="A qcow2 image without a backing file.")],
    name: Annotated[str, typer.Option(help="The public image's name.")],
    login_user: LoginUserOption = "root",
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Upload a qcow2 file as a public image; the API checks it before keeping it."""
    image = upload(client_of(profile), PUBLIC, {"name": name, "login_user": login_user}, file)
    if as_json:
        show(image, as_json=True)
        return
    console.print(_added(image))


@image_app.command("list")
def image_list(as_json: JsonOption = False, profile: ProfileOption = None) -> None:
    """The public images, and how many VMs each one's disks are made from."""
    rows = sorted(client_of(profile).every(PUBLIC), key=lambda image: image["name"])
    listing(rows, COLUMNS, as_json)


@image_app.command("delete")
def image_delete(
    name: Annotated[str, typer.Argument(help="The public image's name or id.")],
    profile: ProfileOption = None,
) -> None:
    """Delete a public image that no VM uses, and its file."""
    client_of(profile).delete(f"{PUBLIC}/{part(name)}")
    console.print(f"Deleted public image {name}.")


def _taken(client: Client, name: str) -> bool:
    try:
        client.get(f"{PUBLIC}/{part(name)}")
    except NotFound:
        return False
    return True


@image_app.command("build-tiny")
def image_build_tiny(
    output: Annotated[
        Path | None, typer.Option(help="Also keep the qcow2 here (it is replaced).")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Upload it as a public image.")
    ] = True,
    name: Annotated[str, typer.Option(help="The public image's name.")] = tiny.NAME,
    cache: Annotated[
        Path, typer.Option(help="Where the Debian packages are kept between builds.")
    ] = DEB_CACHE,
    profile: ProfileOption = None,
) -> None:
    """Build the tiny guest image (a Debian kernel, busybox and dropbear) from Debian
    packages on this machine, and upload it as a public image."""
    if not register and output is None:
        fail("with --no-register, give --output: the image has to go somewhere")
    client = client_of(profile) if register else None
    if client is not None:
        check_name(name)
        # Asked before a build of minutes, not only by the upload after it.
        if _taken(client, name):
            raise Conflict(f"there is a public image named {name!r} already")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nubis-tiny-") as scratch:
        target = output or Path(scratch) / "tiny.qcow2"
        try:
            with console.status("building the tiny guest image from Debian packages"):
                tiny.build(target, cache=cache)
        except BuildError as error:
            fail(str(error))
        took = time.monotonic() - began
        console.print(f"Built {target if output else 'the tiny image'} in {took:.1f} s.")
        if client is not None:
            image = upload(client, PUBLIC, {"name": name}, target)
            console.print(f"Added public image {image['name']} ({image['id']}).")
