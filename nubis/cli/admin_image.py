"""`nubis admin image …`: public images, added from files on this machine, and the tiny
guest image nubis builds from Debian packages."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import func, select

from nubis.cli.output import JsonOption, console, fail, listing, show
from nubis.cli.store import database
from nubis.config import Settings
from nubis.errors import Conflict
from nubis.guestimage import BuildError, tiny
from nubis.guestimage.debian import DEB_CACHE
from nubis.ids import Kind, format_id
from nubis.images import public, store
from nubis.models import Image, Vm
from nubis.names import check_name

image_app = typer.Typer(
    help="Public images: the ones every project can start VMs from.", no_args_is_help=True
)

COLUMNS = ["name", "id", "state", "size_bytes", "virtual_size_bytes", "vms", "created_at"]


def _summary(image: Image, vms: int) -> dict[str, Any]:
    return {
        "name": image.name,
        "id": format_id(Kind.IMAGE, image.id),
        "state": image.state,
        "size_bytes": image.size_bytes,
        "virtual_size_bytes": image.virtual_size_bytes,
        "sha256": image.sha256,
        "vms": vms,
        "created_at": image.created_at.isoformat(timespec="seconds"),
    }


@image_app.command("add")
def image_add(
    file: Annotated[Path, typer.Argument(help="A qcow2 image without a backing file.")],
    name: Annotated[str, typer.Option(help="The public image's name.")],
    as_json: JsonOption = False,
) -> None:
    """Copy a qcow2 file into the image store as a public image."""
    with database() as db:
        image = public.register(db, Settings(), name, file)
    if as_json:
        show(_summary(image, 0), as_json=True)
        return
    console.print(
        f"Added public image {image.name} ({format_id(Kind.IMAGE, image.id)}): "
        f"{image.size_bytes} bytes, {image.virtual_size_bytes} bytes virtual, "
        f"sha256 {image.sha256}."
    )


@image_app.command("list")
def image_list(as_json: JsonOption = False) -> None:
    """The public images, and how many VMs each one's disks are made from."""
    users = select(Vm.image_id, func.count().label("vms")).group_by(Vm.image_id).subquery("users")
    query = (
        select(Image, func.coalesce(users.c.vms, 0))
        .outerjoin(users, users.c.image_id == Image.id)
        .where(Image.project_id.is_(None))
        .order_by(Image.name)
    )
    with database() as db, db.reading() as session:
        rows = [_summary(image, vms) for image, vms in session.execute(query)]
    listing(rows, COLUMNS, as_json)


@image_app.command("delete")
def image_delete(
    name: Annotated[str, typer.Argument(help="The public image's name or id.")],
) -> None:
    """Delete a public image that no VM uses, and its file."""
    settings = Settings()
    with database() as db, db.transaction() as session:
        image = store.find(session, None, name, public=False)
        files = store.remove(session, settings.data_dir, image)
    for file in files:
        file.unlink(missing_ok=True)
    console.print(f"Deleted public image {name}.")


def _taken(name: str) -> bool:
    with database() as db, db.reading() as session:
        found = session.scalar(
            select(Image.id).where(Image.project_id.is_(None), Image.name == name)
        )
    return found is not None


@image_app.command("build-tiny")
def image_build_tiny(
    output: Annotated[
        Path | None, typer.Option(help="Also keep the qcow2 here (it is replaced).")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Add it as a public image.")
    ] = True,
    name: Annotated[str, typer.Option(help="The public image's name.")] = public.TINY,
    cache: Annotated[
        Path, typer.Option(help="Where the Debian packages are kept between builds.")
    ] = DEB_CACHE,
) -> None:
    """Build the tiny guest image (a Debian kernel, busybox and dropbear) from Debian
    packages, and add it as a public image."""
    if not register and output is None:
        fail("with --no-register, give --output: the image has to go somewhere")
    if register:
        check_name(name)
        if _taken(name):
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
        if register:
            with database() as db:
                image = public.register(db, Settings(), name, target)
            console.print(f"Added public image {image.name} ({format_id(Kind.IMAGE, image.id)}).")
