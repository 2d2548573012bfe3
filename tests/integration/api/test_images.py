"""Images over the API: a project's uploads and operators' public images; only a
qcow2 without a backing file is kept, and a refused file leaves nothing behind."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nubis.models import Role
from tests.integration.api.people import People, Person, problem


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
