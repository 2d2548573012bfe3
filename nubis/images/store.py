"""The control plane's image store: image rows and the files they describe.

An upload is two steps: the row is made (`uploading`), then the file is streamed in
(to `<id>.partial` in the store's directory), hashed as it comes, checked (`verifying`,
see `verify`) and, if it is a self-contained qcow2, kept under its final name
(`<id>.qcow2`, `active`). How an upload can end:

- a refused file (ImageRefused) or one too large leaves nothing behind, neither file
  nor row;
- any other failure (the client breaks off, qemu-img cannot run, the disk is full, the
  store does not answer) leaves the row `failed` with the reason, and no file;
- an image is deleted in whatever state it is once no VM uses it, its files with it;
  an upload still under way into it notices that its `.partial` is gone (at the next
  chunk, or once it is checked) and answers 409, keeping nothing.

A process that dies mid-upload leaves its row `uploading` or `verifying` and its
`.partial`. Which uploads are alive is told by the files, without a column for it: a
live upload touches its `.partial` at least every HEARTBEAT_SECONDS (a thread does,
also while the client sends nothing and while qemu-img checks the file). So a file of
an upload that has not been touched for STALE_SECONDS belongs to no process any more,
and `recover` (run when an API process starts, see `nubis.api.routes.images`) cleans
those, and only those: an image `uploading` or `verifying` whose file is stale becomes
`failed` and its files go; a stale `.partial` whose image is gone or no longer being
uploaded goes. Other API processes' live uploads are fresh and left alone, also on a
store several of them share. (A process frozen for longer than STALE_SECONDS loses its
uploads the same way; it finds out and answers 409.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import BinaryIO
from uuid import UUID

import anyio
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from nubis.db import Database
from nubis.db.refs import ref_clause
from nubis.errors import (
    Conflict,
    ImageRefused,
    InvalidInput,
    NotFound,
    NubisError,
    PayloadTooLarge,
)
from nubis.ids import Kind, format_id, parse_id
from nubis.images.verify import verify
from nubis.models import Image, ImageState, Vm
from nubis.names import check_name

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
"""How often a live upload touches its file, at the least."""
STALE_SECONDS = 300.0
"""How long an upload's file may go untouched before it is taken for a dead upload's."""
IN_PROGRESS = (ImageState.UPLOADING, ImageState.VERIFYING)
FINAL_SUFFIX = ".qcow2"
PARTIAL_SUFFIX = ".partial"
INTERRUPTED = "the upload was interrupted (the API process taking it stopped); upload it again"


class _Gone(Exception):
    """The image was deleted, or its upload given up, while its file came in."""


def directory(data_dir: Path) -> Path:
    return data_dir / "images"


def file_of(data_dir: Path, image_id: UUID) -> Path:
    return directory(data_dir) / f"{format_id(Kind.IMAGE, image_id)}{FINAL_SUFFIX}"


def partial_of(data_dir: Path, image_id: UUID) -> Path:
    """Where the file of an upload under way is written."""
    return file_of(data_dir, image_id).with_suffix(PARTIAL_SUFFIX)


LOGIN_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
"""A user name as Debian's `adduser` takes it (and cloud images use)."""


def begin(
    session: Session, project_id: UUID | None, name: str, *, login_user: str = "root"
) -> Image:
    """A new image row, waiting for its file. `project_id` None: a public image.
    `login_user`: who to log in as on its VMs."""
    check_name(name)
    if not LOGIN_USER.fullmatch(login_user):
        raise InvalidInput(
            f"{login_user!r} is not a user name (lowercase letters, digits, _ and -)",
            errors={"login_user": "a user name, e.g. debian"},
        )
    clash = select(Image.id).where(Image.name == name)
    clash = clash.where(
        Image.project_id.is_(None) if project_id is None else Image.project_id == project_id
    )
    if session.scalar(clash) is not None:
        where = "a public image" if project_id is None else "an image in the project"
        raise Conflict(f"there is {where} named {name!r} already")
    image = Image(project_id=project_id, name=name, login_user=login_user)
    session.add(image)
    session.flush()
    return image


def find(session: Session, project_id: UUID | None, ref: str, *, public: bool = True) -> Image:
    """The image `ref` names: the project's own first, then (if `public`) a public one."""
    owners = [Image.project_id == project_id] if project_id is not None else []
    if public or project_id is None:
        owners.append(Image.project_id.is_(None))
    rows = session.scalars(
        select(Image)
        .where(or_(*owners), ref_clause(Kind.IMAGE, Image.id, Image.name, ref))
        .order_by(Image.project_id.is_(None))
    ).all()
    if not rows:
        raise NotFound(f"no image {ref!r}")
    return rows[0]


async def receive(
    db: Database, data_dir: Path, image_id: UUID, chunks: AsyncIterator[bytes], max_bytes: int
) -> None:
    """Stream an image's file in, check it, and keep it or refuse it (ImageRefused).

    Whatever else goes wrong ends the image `failed` and removes its file; an image
    deleted meanwhile answers Conflict."""
    target = file_of(data_dir, image_id)
    partial = partial_of(data_dir, image_id)
    await run_in_threadpool(_claim, db, image_id, partial)
    try:
        with _Heartbeat(partial):
            size, sha256 = await _stream(partial, chunks, max_bytes)
            await run_in_threadpool(
                _settle, db, image_id, partial, target, size=size, sha256=sha256
            )
    except (ImageRefused, PayloadTooLarge):
        await _cleanly(_forget, db, image_id, partial, target)
        raise
    except _Gone:
        await _cleanly(_unlink, (partial, target))
        raise Conflict(
            "the image was deleted (or its upload given up) while its file came in; "
            "nothing of it is kept"
        ) from None
    except BaseException as error:
        if isinstance(error, Exception) and not isinstance(error, ClientDisconnect):
            log.exception("the upload of %s failed", format_id(Kind.IMAGE, image_id))
        await _cleanly(_give_up, db, image_id, partial, target, _reason(error))
        raise


async def _stream(partial: Path, chunks: AsyncIterator[bytes], max_bytes: int) -> tuple[int, str]:
    """Write `chunks` to `partial` (the file `_claim` made); their size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    try:
        out = partial.open("r+b")  # never made anew: gone means deleted
    except FileNotFoundError:
        raise _Gone from None
    with out:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"an image may be at most {max_bytes} bytes")
            digest.update(chunk)
            await run_in_threadpool(_write, out, partial, chunk)
        await run_in_threadpool(_sync, out, partial)
    return size, digest.hexdigest()


def _write(out: BinaryIO, partial: Path, chunk: bytes) -> None:
    if not _is_open_as(partial, out):
        raise _Gone
    out.write(chunk)


def _sync(out: BinaryIO, partial: Path) -> None:
    out.flush()
    os.fsync(out.fileno())
    if not _is_open_as(partial, out):
        raise _Gone


def _is_open_as(path: Path, out: BinaryIO) -> bool:
    """Whether `path` still names the file `out` writes (not deleted, not replaced)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    written = os.fstat(out.fileno())
    return (named.st_dev, named.st_ino) == (written.st_dev, written.st_ino)


class _Heartbeat:
    """Touches `path` every HEARTBEAT_SECONDS while the block runs (see the module's
    docstring: that is how other processes know the upload is alive)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"beat-{path.name}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self._path)
            except FileNotFoundError:
                return  # deleted, or in place under its final name


def _claim(db: Database, image_id: UUID, partial: Path) -> None:
    with db.transaction() as session:
        image = session.get(Image, image_id, with_for_update=True)
        if image is None:
            raise NotFound("no such image")
        if image.state != ImageState.UPLOADING or partial.exists():
            raise Conflict(f"image {image.name} is {image.state}; it takes its file once")
        partial.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial.touch(mode=0o600)


def _settle(
    db: Database, image_id: UUID, partial: Path, target: Path, *, size: int, sha256: str
) -> None:
    with db.transaction() as session:
        image = session.get(Image, image_id, with_for_update=True)
        if image is None or image.state != ImageState.UPLOADING:
            raise _Gone
        image.state = ImageState.VERIFYING
    facts = verify(partial)
    with db.transaction() as session:
        image = session.get(Image, image_id, with_for_update=True)
        if image is None or image.state != ImageState.VERIFYING or not partial.exists():
            raise _Gone
        # Under the row's lock: a delete waits for this, then removes the file too.
        os.replace(partial, target)
        image.state = ImageState.ACTIVE
        image.size_bytes = size
        image.virtual_size_bytes = facts.virtual_size_bytes
        image.sha256 = sha256


async def _cleanly(undo: Callable[..., None], *args: object) -> None:
    """Run the clean-up `undo(*args)` in a thread, also in a task being cancelled."""
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(undo, *args)


def _unlink(files: Iterable[Path]) -> None:
    for file in files:
        file.unlink(missing_ok=True)


def _forget(db: Database, image_id: UUID, partial: Path, target: Path) -> None:
    """A refused file leaves nothing: no file, no row."""
    _unlink((partial, target))
    with db.transaction() as session:
        image = session.get(Image, image_id, with_for_update=True)
        if image is not None and image.state in IN_PROGRESS:
            session.delete(image)


def _give_up(db: Database, image_id: UUID, partial: Path, target: Path, why: str) -> None:
    """A failed upload: the image `failed` with the reason, its files gone. An image
    that is active (kept just before a cancellation) or gone is left as it is."""
    with db.transaction() as session:
        image = session.get(Image, image_id, with_for_update=True)
        if image is not None and image.state not in IN_PROGRESS:
            return
        if image is not None:
            image.state = ImageState.FAILED
            image.failure = why
    _unlink((partial, target))


def _reason(error: BaseException) -> str:
    """What a user is told of a failed upload: the cause, not the server's insides."""
    if isinstance(error, NubisError):
        return str(error)
    if isinstance(error, ClientDisconnect):
        return "the upload broke off before the whole file came in; upload it again"
    if not isinstance(error, Exception):
        return INTERRUPTED
    return f"the server could not take the file ({type(error).__name__}, logged); upload it again"


def remove(session: Session, data_dir: Path, image: Image) -> tuple[Path, ...]:
    """Delete the row of an image no VM uses, in whatever state it is; the files to
    unlink once that commits (an upload still under way then finds its file gone)."""
    user = session.scalar(select(Vm.name).where(Vm.image_id == image.id).limit(1))
    if user is not None:
        raise Conflict(f"image {image.name} is in use by VM {user}")
    session.delete(image)
    session.flush()
    return file_of(data_dir, image.id), partial_of(data_dir, image.id)


def recover(db: Database, data_dir: Path, *, stale_seconds: float | None = None) -> int:
    """Clean what uploads that no process is doing any longer left (see the module's
    docstring for the rule; `stale_seconds` defaults to STALE_SECONDS); how many images
    and files it cleaned."""
    files = _upload_files(directory(data_dir))
    stale_before = time.time() - (STALE_SECONDS if stale_seconds is None else stale_seconds)

    def stale(path: Path) -> bool:
        try:
            return path.stat().st_mtime < stale_before
        except FileNotFoundError:
            return False

    doomed: list[Path] = []
    cleaned = 0
    with db.transaction() as session:
        # A row another process has locked is one it is settling right now: alive.
        stuck = session.scalars(
            select(Image).where(Image.state.in_(IN_PROGRESS)).with_for_update(skip_locked=True)
        ).all()
        for image in stuck:
            partial, target = partial_of(data_dir, image.id), file_of(data_dir, image.id)
            if partial.exists():
                dead = stale(partial)
            elif image.state == ImageState.VERIFYING:
                # Between the check and the final commit the file has its final name;
                # with neither file there is nothing left of the upload.
                dead = not target.exists() or stale(target)
            else:
                dead = False  # still waiting for its PUT
            if dead:
                image.state = ImageState.FAILED
                image.failure = INTERRUPTED
                doomed += [partial, target]
                cleaned += 1
                log.warning("image %s: %s", format_id(Kind.IMAGE, image.id), INTERRUPTED)
        in_progress = set(
            session.scalars(
                select(Image.id).where(Image.id.in_(list(files)), Image.state.in_(IN_PROGRESS))
            )
        )
    for image_id, partial in files.items():
        if image_id in in_progress or partial in doomed or not stale(partial):
            continue
        doomed.append(partial)
        cleaned += 1
        log.warning("removing %s: no upload of its image is under way", partial)
    _unlink(doomed)
    return cleaned


def _upload_files(images: Path) -> dict[UUID, Path]:
    """The `.partial` files in the store's directory, by their image's key."""
    found: dict[UUID, Path] = {}
    try:
        entries = list(images.iterdir())
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.suffix != PARTIAL_SUFFIX:
            continue
        try:
            found[parse_id(Kind.IMAGE, entry.stem)] = entry
        except InvalidInput:
            continue  # not a file of the store's
    return found
