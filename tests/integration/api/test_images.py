"""Images over the API: a project's uploads and operators' public images; only a
self-contained qcow2 is kept, a refused file leaves nothing behind, and an upload that
fails or is cut short (also by a crash) leaves a `failed` image, no file, and nothing
that cannot be deleted."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message

from nubis.api import create_app
from nubis.config import Settings
from nubis.db import Database
from nubis.ids import Kind, parse_id
from nubis.images import store
from nubis.models import Image, ImageState, Role
from nubis.secretbox import SecretBox
from tests.integration.api.people import People, Person, problem
from tests.unit.images.hostile import fifo, hostile_image

INTERRUPTED = "the upload was interrupted (the API process taking it stopped); upload it again"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"  # the app's, as the api conftest makes it


@pytest.fixture
def alice(people: People) -> Person:
    return people.user("alice")


@pytest.fixture
def project(people: People, alice: Person) -> str:
    return people.project("web", {alice: Role.MEMBER})


def qcow2(tmp_path: Path, name: str, *extra: str, size: str = "64M") -> bytes:
    path = tmp_path / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *extra, str(path), size], check=True)
    return path.read_bytes()


def upload(person: Person, base: str, name: str, content: bytes) -> tuple[dict[str, Any], int]:
    made = person.post(base, json={"name": name})
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "uploading"
    answer = person.put(f"{base}/{name}/file", content)
    return answer.json(), answer.status_code


def test_an_uploaded_qcow2_becomes_active_with_its_sizes_and_checksum(
    alice: Person, project: str, tmp_path: Path, data_dir: Path
) -> None:
    content = qcow2(tmp_path, "disk.qcow2", size="100M")

    image, status = upload(alice, f"/v1/projects/{project}/images", "debian", content)

    assert status == 200, image
    assert image["state"] == "active"
    assert image["size_bytes"] == len(content)
    assert image["virtual_size_bytes"] == 100 * 1024 * 1024
    assert image["sha256"] == hashlib.sha256(content).hexdigest()
    assert [f.name for f in (data_dir / "images").iterdir()] == [f"{image['id']}.qcow2"]
    listed = alice.get(f"/v1/projects/{project}/images").json()["items"]
    assert [i["name"] for i in listed] == ["debian"]


def test_a_raw_file_is_refused_with_its_format_and_nothing_is_kept(
    alice: Person, project: str, data_dir: Path
) -> None:
    answer, status = upload(alice, f"/v1/projects/{project}/images", "raw", b"\0" * 65536)

    assert status == 422
    assert answer["code"] == "image_refused"
    assert "raw, not qcow2" in answer["detail"]
    assert alice.get(f"/v1/projects/{project}/images").json()["items"] == []
    assert list((data_dir / "images").iterdir()) == []


def test_a_qcow2_with_a_backing_file_is_refused_and_nothing_is_kept(
    alice: Person, project: str, tmp_path: Path, data_dir: Path
) -> None:
    qcow2(tmp_path, "base.qcow2")
    content = qcow2(tmp_path, "overlay.qcow2", "-b", str(tmp_path / "base.qcow2"), "-F", "qcow2")

    answer, status = upload(alice, f"/v1/projects/{project}/images", "overlay", content)

    assert status == 422
    assert "backing file" in answer["detail"]
    assert alice.get(f"/v1/projects/{project}/images").json()["items"] == []
    assert list((data_dir / "images").iterdir()) == []


def test_an_image_takes_its_file_once(alice: Person, project: str, tmp_path: Path) -> None:
    content = qcow2(tmp_path, "disk.qcow2")
    upload(alice, f"/v1/projects/{project}/images", "once", content)

    again = alice.put(f"/v1/projects/{project}/images/once/file", content)

    problem(again, 409)


def test_an_image_larger_than_the_request_body_limit_streams_in(
    alice: Person, project: str, tmp_path: Path
) -> None:
    content = qcow2(tmp_path, "big.qcow2", "-o", "preallocation=full", size="3M")
    assert len(content) > 1024 * 1024

    image, status = upload(alice, f"/v1/projects/{project}/images", "big", content)

    assert status == 200, image
    assert image["size_bytes"] == len(content)


def test_a_public_image_is_seen_by_every_project_and_made_by_operators_only(
    people: People, alice: Person, project: str, tmp_path: Path
) -> None:
    operator = people.user("olga", operator=True)
    content = qcow2(tmp_path, "tiny.qcow2")

    problem(alice.post("/v1/admin/images", json={"name": "tiny"}), 403)
    image, status = upload(operator, "/v1/admin/images", "tiny", content)

    assert status == 200, image
    assert image["public"] is True
    seen = alice.get(f"/v1/projects/{project}/images/tiny").json()
    assert seen["id"] == image["id"]
    problem(alice.delete(f"/v1/projects/{project}/images/tiny"), 404)
    assert operator.delete("/v1/admin/images/tiny").status_code == 204


def test_image_names_are_unique_in_a_project(alice: Person, project: str) -> None:
    assert alice.post(f"/v1/projects/{project}/images", json={"name": "one"}).status_code == 201

    problem(alice.post(f"/v1/projects/{project}/images", json={"name": "one"}), 409)


def test_a_qcow2_with_an_external_data_file_is_refused_unopened_and_nothing_is_kept(
    alice: Person, project: str, tmp_path: Path, data_dir: Path
) -> None:
    content = hostile_image(tmp_path).read_bytes()  # names tmp_path/victim.raw

    with fifo(tmp_path / "victim.raw") as victim_opened:
        answer, status = upload(alice, f"/v1/projects/{project}/images", "hostile", content)
        assert not victim_opened()

    assert status == 422
    assert answer["code"] == "image_refused"
    assert answer["detail"] == (
        f"the qcow2 image keeps its data in an external data file ({tmp_path}/victim.raw), "
        "which QEMU would open on the host; upload a self-contained one "
        "(qemu-img convert -O qcow2 IN OUT)"
    )
    assert alice.get(f"/v1/projects/{project}/images").json()["items"] == []
    assert list((data_dir / "images").iterdir()) == []


def put_in_pieces(
    app: FastAPI,
    person: Person,
    path: str,
    pieces: list[bytes],
    *,
    between: Callable[[], None] | None = None,
    break_off: bool = False,
) -> tuple[int, dict[str, Any]]:
    """PUT `pieces` as one body, straight to the app as a server hands a request on: a
    piece at a time, `between()` run (in a thread) after the first piece, and the
    client gone after the last one if `break_off`. The answer's status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {person.token}".encode()),
            (b"content-type", b"application/octet-stream"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    sent: list[Message] = []

    async def messages() -> AsyncIterator[Message]:
        for number, piece in enumerate(pieces):
            if number == 1 and between is not None:
                await asyncio.to_thread(between)
            last = number == len(pieces) - 1
            yield {"type": "http.request", "body": piece, "more_body": break_off or not last}
        while True:
            yield {"type": "http.disconnect"}

    async def call() -> None:
        stream = messages()

        async def receive() -> Message:
            return await anext(stream)

        async def send(message: Message) -> None:
            sent.append(message)

        with contextlib.suppress(Exception):  # a server logs it; the client got a 500
            await app(scope, receive, send)

    asyncio.run(call())
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body) if body else {}


def start_another_api(db: Database, box: SecretBox, data_dir: Path) -> None:
    """Another API process on the same store starts (and stops again)."""
    other = create_app(db, box, Settings(data_dir=data_dir, database_url="sqlite://"))
    with TestClient(other):
        pass


def made(person: Person, base: str, name: str) -> dict[str, Any]:
    answer = person.post(base, json={"name": name})
    assert answer.status_code == 201, answer.text
    image: dict[str, Any] = answer.json()
    return image


def left_by_a_crash(
    db: Database, data_dir: Path, image: dict[str, Any], state: str, file: str, *, age: float
) -> Path:
    """What a process that died in the middle of `image`'s upload leaves: the row in
    `state`, its `file` ("partial" or "qcow2") last touched `age` seconds ago."""
    with db.transaction() as session:
        row = session.get(Image, parse_id(Kind.IMAGE, image["id"]))
        assert row is not None
        row.state = state
    path = data_dir / "images" / f"{image['id']}.{file}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"QFI\xfb half an image")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_an_upload_that_breaks_off_leaves_a_failed_image_without_its_file(
    app: FastAPI, alice: Person, project: str, tmp_path: Path, data_dir: Path
) -> None:
    base = f"/v1/projects/{project}/images"
    made(alice, base, "cut")
    content = qcow2(tmp_path, "disk.qcow2")

    put_in_pieces(app, alice, f"{base}/cut/file", [content[:65536]], break_off=True)

    image = alice.get(f"{base}/cut").json()
    assert (image["state"], image["failure"]) == (
        "failed",
        "the upload broke off before the whole file came in; upload it again",
    )
    assert list((data_dir / "images").iterdir()) == []
    assert alice.delete(f"{base}/cut").status_code == 204
    assert alice.get(f"{base}").json()["items"] == []


def test_a_check_that_fails_unexpectedly_leaves_a_failed_image_without_its_file(
    alice: Person,
    *,
    project: str,
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = f"/v1/projects/{project}/images"
    content = qcow2(tmp_path, "disk.qcow2")
    made(alice, base, "unchecked")
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # qemu-img is not to be found

    answer = alice.put(f"{base}/unchecked/file", content)

    problem(answer, 500, "internal")
    image = alice.get(f"{base}/unchecked").json()
    assert (image["state"], image["failure"]) == (
        "failed",
        "the server could not take the file (FileNotFoundError, logged); upload it again",
    )
    assert list((data_dir / "images").iterdir()) == []
    assert alice.delete(f"{base}/unchecked").status_code == 204


def test_an_api_start_fails_the_uploads_a_crash_left_and_removes_their_files(
    db: Database, box: SecretBox, alice: Person, project: str, data_dir: Path
) -> None:
    base = f"/v1/projects/{project}/images"
    hour = 3600.0
    left = [
        left_by_a_crash(db, data_dir, made(alice, base, "streaming"), "uploading", "partial",
                        age=hour),
        left_by_a_crash(db, data_dir, made(alice, base, "checking"), "verifying", "partial",
                        age=hour),
        left_by_a_crash(db, data_dir, made(alice, base, "renamed"), "verifying", "qcow2",
                        age=hour),
    ]  # fmt: skip
    made(alice, base, "waiting")  # no file sent yet: nothing to clean
    stray = data_dir / "images" / "img-06bq1j0pkw7v8cs3d9j1e4tm5h.partial"  # no image
    stray.write_bytes(b"left over")
    os.utime(stray, (time.time() - hour, time.time() - hour))

    start_another_api(db, box, data_dir)

    images = {i["name"]: i for i in alice.get(base).json()["items"]}
    assert {name: (i["state"], i["failure"]) for name, i in images.items()} == {
        "streaming": ("failed", INTERRUPTED),
        "checking": ("failed", INTERRUPTED),
        "renamed": ("failed", INTERRUPTED),
        "waiting": ("uploading", None),
    }
    assert [path for path in [*left, stray] if path.exists()] == []
    for name in images:
        assert alice.delete(f"{base}/{name}").status_code == 204
    assert alice.get(base).json()["items"] == []


def test_an_api_start_leaves_another_processs_live_upload_alone(
    app: FastAPI,
    db: Database,
    *,
    box: SecretBox,
    alice: Person,
    project: str,
    tmp_path: Path,
    data_dir: Path,
) -> None:
    base = f"/v1/projects/{project}/images"
    made(alice, base, "live")
    content = qcow2(tmp_path, "disk.qcow2")
    seen: list[tuple[str, bool]] = []

    def another_start() -> None:
        start_another_api(db, box, data_dir)
        image = alice.get(f"{base}/live").json()
        seen.append((image["state"], (data_dir / "images" / f"{image['id']}.partial").exists()))

    status, image = put_in_pieces(
        app, alice, f"{base}/live/file", [content[:65536], content[65536:]], between=another_start
    )

    assert seen == [("uploading", True)]
    assert status == 200, image
    assert (image["state"], image["sha256"]) == ("active", hashlib.sha256(content).hexdigest())
    assert [f.name for f in (data_dir / "images").iterdir()] == [f"{image['id']}.qcow2"]


def test_a_live_upload_keeps_its_file_fresh_while_the_client_sends_nothing(
    app: FastAPI,
    db: Database,
    *,
    alice: Person,
    project: str,
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store, "HEARTBEAT_SECONDS", 0.05)
    base = f"/v1/projects/{project}/images"
    image_id = made(alice, base, "slow")["id"]
    partial = data_dir / "images" / f"{image_id}.partial"
    content = qcow2(tmp_path, "disk.qcow2")
    cleaned: list[int] = []

    def client_pauses() -> None:
        an_hour_ago = time.time() - 3600
        os.utime(partial, (an_hour_ago, an_hour_ago))
        time.sleep(0.5)
        cleaned.append(store.recover(db, data_dir, stale_seconds=60))

    status, image = put_in_pieces(
        app, alice, f"{base}/slow/file", [content[:65536], content[65536:]], between=client_pauses
    )

    assert cleaned == [0]
    assert (status, image["state"]) == (200, "active")


def test_an_api_restarted_right_after_a_crash_cleans_its_uploads_once_they_are_stale(
    db: Database,
    box: SecretBox,
    *,
    alice: Person,
    project: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store, "STALE_SECONDS", 0.5)
    base = f"/v1/projects/{project}/images"
    partial = left_by_a_crash(
        db, data_dir, made(alice, base, "fresh"), "uploading", "partial", age=0
    )
    other = create_app(db, box, Settings(data_dir=data_dir, database_url="sqlite://"))

    with TestClient(other):
        at_start = alice.get(f"{base}/fresh").json()["state"]
        deadline = time.monotonic() + 10
        while alice.get(f"{base}/fresh").json()["state"] != "failed":
            assert time.monotonic() < deadline, "the upload was never given up"
            time.sleep(0.1)

    assert at_start == "uploading"
    assert not partial.exists()


def test_deleting_an_image_during_its_upload_stops_the_upload_and_keeps_nothing(
    app: FastAPI, alice: Person, project: str, tmp_path: Path, data_dir: Path
) -> None:
    base = f"/v1/projects/{project}/images"
    made(alice, base, "doomed")
    content = qcow2(tmp_path, "disk.qcow2")
    deleted: list[int] = []

    def delete() -> None:
        deleted.append(alice.delete(f"{base}/doomed").status_code)

    status, answer = put_in_pieces(
        app, alice, f"{base}/doomed/file", [content[:65536], content[65536:]], between=delete
    )

    assert deleted == [204]
    assert (status, answer["code"], answer["detail"]) == (
        409,
        "conflict",
        "the image was deleted (or its upload given up) while its file came in; "
        "nothing of it is kept",
    )
    problem(alice.get(f"{base}/doomed"), 404)
    assert list((data_dir / "images").iterdir()) == []


@pytest.mark.parametrize(
    ("state", "file"),
    [("uploading", "partial"), ("verifying", "partial"), ("verifying", "qcow2")],
)
def test_an_image_whose_upload_died_can_be_deleted_before_any_restart(
    db: Database,
    alice: Person,
    *,
    project: str,
    data_dir: Path,
    state: str,
    file: str,
) -> None:
    base = f"/v1/projects/{project}/images"
    left = left_by_a_crash(db, data_dir, made(alice, base, "stuck"), state, file, age=0)

    assert alice.delete(f"{base}/stuck").status_code == 204

    problem(alice.get(f"{base}/stuck"), 404)
    assert not left.exists()


def test_a_failed_image_can_be_deleted(db: Database, alice: Person, project: str) -> None:
    base = f"/v1/projects/{project}/images"
    image = made(alice, base, "failed")
    with db.transaction() as session:
        row = session.get(Image, parse_id(Kind.IMAGE, image["id"]))
        assert row is not None
        row.state, row.failure = ImageState.FAILED, "the upload broke off"

    assert alice.delete(f"{base}/failed").status_code == 204
    problem(alice.get(f"{base}/failed"), 404)


def test_an_image_says_who_to_log_in_as_and_a_name_no_system_takes_is_refused(
    alice: Person, project: str
) -> None:
    base = f"/v1/projects/{project}/images"

    debian = alice.post(base, json={"name": "debian-12", "login_user": "debian"})
    plain = made(alice, base, "plain")
    refused = alice.post(base, json={"name": "odd", "login_user": "Root; rm"})

    assert (debian.status_code, debian.json()["login_user"]) == (201, "debian")
    assert plain["login_user"] == "root"
    assert problem(refused, 422)["errors"] == {"login_user": "a user name, e.g. debian"}
    assert [i["name"] for i in alice.get(base).json()["items"]] == ["debian-12", "plain"]
