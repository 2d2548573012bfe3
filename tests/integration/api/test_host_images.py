"""`GET /v1/agent/images/{image}`: a host fetches the images of the VMs it is to run,
and no other, whoever's they are."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from nubis.db import Database
from nubis.ids import Kind, format_id
from nubis.images import store
from nubis.models import Image, ImageState
from tests.integration.api import fleet
from tests.integration.api.host_agent import Agent
from tests.integration.api.people import People, problem

CONTENT = b"QFI\xfb not really a qcow2, but these bytes are the image's"


def _image(db: Database, app: FastAPI, name: str, project: str | None = None) -> str:
    """An active image (of `project`'s, else the one fleet made) with a file; its id."""
    with db.transaction() as session:
        image = session.scalars(select(Image).where(Image.name == name)).one_or_none()
        if image is None:
            image = Image(name=name, state=ImageState.ACTIVE, size_bytes=len(CONTENT),
                          virtual_size_bytes=2**30, sha256="cd" * 32)  # fmt: skip
            session.add(image)
            session.flush()
        key = image.id
    path: Path = store.file_of(app.state.settings.data_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CONTENT)
    return format_id(Kind.IMAGE, key)


def _fetch(agent: Agent, image: str) -> tuple[int, bytes]:
    answer = agent.client.get(f"/v1/agent/images/{image}", headers=agent.auth)
    return answer.status_code, answer.content


def test_a_host_fetches_the_image_of_its_vm_and_no_other_host_does(
    people: People, db: Database, app: FastAPI, client: TestClient, agent: Agent
) -> None:
    alice = people.user("alice")
    project = fleet.project_with_image(people, db, alice)
    image = _image(db, app, "tiny-web")
    other_host = fleet.join(client, db, "h2", "fd00::2")
    made = fleet.vm(alice, project, "web1")
    with_the_vm, without = (agent, other_host)
    if fleet.host_name(db, made["host"]) == "h2":
        with_the_vm, without = without, with_the_vm

    assert _fetch(with_the_vm, image) == (200, CONTENT)
    refused = problem(without.client.get(f"/v1/agent/images/{image}", headers=without.auth), 404)
    assert refused["detail"] == f"no active image {image!r} for a VM of this host"


def test_an_image_no_vm_uses_is_fetched_by_no_host(
    db: Database, app: FastAPI, agent: Agent
) -> None:
    unused = _image(db, app, "private-unused")

    assert _fetch(agent, unused)[0] == 404
