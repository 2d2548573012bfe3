"""`nubis image …`: disk images VMs start from, the project's own and public ones."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from nubis.cli.account import ProfileOption
from nubis.cli.client import Client, part, project_of, signed_in
from nubis.cli.output import JsonOption, console, errors, fail, listing, show
from nubis.cli.project import ProjectOption
from nubis.errors import InvalidInput, NubisError

image_app = typer.Typer(help="Disk images (qcow2) that VMs start from.", no_args_is_help=True)

CHUNK_BYTES = 1024 * 1024
COLUMNS = ["name", "id", "state", "public", "size_bytes", "virtual_size_bytes", "created_at"]


def _images(project: str) -> str:
    return f"/v1/projects/{part(project)}/images"


def _chunks(source: BinaryIO, length: int, advance: Callable[[int], Any]) -> Iterator[bytes]:
    """The file's `length` bytes, a chunk at a time; a file that changes size while it
    is read would not match the length announced, so that is an error."""
    left = length
    while left > 0:
        chunk = source.read(min(CHUNK_BYTES, left))
        if not chunk:
            raise InvalidInput(f"{source.name} shrank while it was being uploaded")
        left -= len(chunk)
        advance(len(chunk))
        yield chunk


@contextmanager
def _progress(name: str, length: int) -> Iterator[Callable[[int], Any]]:
    """A progress bar on stderr where there is a terminal; what advances it."""
    if not errors.is_terminal:
        yield lambda _: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    )
    with bar:
        task = bar.add_task(f"Uploading {name}", total=length)
        yield lambda count: bar.advance(task, count)


def _forget(client: Client, path: str) -> None:
    """Remove what a failed upload left (a refused file leaves nothing: nothing to do)."""
    with suppress(NubisError):
        client.delete(path)


def upload(client: Client, collection: str, body: dict[str, Any], file: Path) -> Any:
    """Name a new image in `collection` (a project's images, or the public ones), then
    stream `file` to it; the image as the API answered. What a failed upload left is
    removed again."""
    path = file.expanduser()
    if not path.exists():
        raise InvalidInput(f"cannot read {file}: no such file")
    if not path.is_file():
        raise InvalidInput(f"{file} is not a regular file")
    try:
        source = path.open("rb")
    except OSError as error:
        raise InvalidInput(f"cannot read {file}: {error.strerror or error}") from None
    with source:
        length = path.stat().st_size
        if length == 0:
            raise InvalidInput(f"{file} is empty")
        image = f"{collection}/{part(client.post(collection, body)['id'])}"
        try:
            with _progress(body["name"], length) as advance:
                return client.put_stream(f"{image}/file", _chunks(source, length, advance), length)
        except BaseException:
            _forget(client, image)
            raise


LoginUserOption = Annotated[
    str,
    typer.Option(
        "--login-user", help="Who `nubis vm ssh` logs in as (a cloud image's: debian, …)."
    ),
]


@image_app.command("upload")
def image_upload(
    file: Annotated[Path, typer.Argument(help="A qcow2 image without a backing file.")],
    name: Annotated[str, typer.Option(help="The image's name in the project.")],
    login_user: LoginUserOption = "root",
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Upload a qcow2 image into the project; the API checks it before keeping it
    (convert other formats with `qemu-img convert -O qcow2 IN OUT`)."""
    client, chosen = signed_in(profile)
    collection = _images(project_of(chosen, project))
    show(upload(client, collection, {"name": name, "login_user": login_user}, file), as_json)


@image_app.command("list")
def image_list(
    project: ProjectOption = None, as_json: JsonOption = False, profile: ProfileOption = None
) -> None:
    """The project's images and the public ones."""
    client, chosen = signed_in(profile)
    listing(client.every(_images(project_of(chosen, project))), COLUMNS, as_json)


@image_app.command("show")
def image_show(
    name: Annotated[str, typer.Argument(help="Name or id.")],
    project: ProjectOption = None,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """An image's fields: state, sizes, checksum."""
    client, chosen = signed_in(profile)
    show(client.get(f"{_images(project_of(chosen, project))}/{part(name)}"), as_json)


@image_app.command("delete")
def image_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Delete one of the project's images (not while a VM uses it)."""
    client, chosen = signed_in(profile)
    if not yes:
        if not sys.stdin.isatty():
            fail(f"not deleting image {name} unasked: there is no terminal to ask at; give --yes")
        typer.confirm(f"Delete image {name}?", abort=True)
    client.delete(f"{_images(project_of(chosen, project))}/{part(name)}")
    console.print(f"Deleted image {name}.")


def register(app: typer.Typer) -> None:
    app.add_typer(image_app, name="image")
