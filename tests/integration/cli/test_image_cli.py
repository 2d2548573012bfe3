"""`nubis image …` as people use it: the real `nubis` command against a real `nubis api`
over each store, uploading files made by `qemu-img`."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from nubis.db import Database
from nubis.models import Image, Project
from tests.integration.cli.conftest import Api, new_member
from tests.integration.cli.test_user_cli import (
    Cli,
    Result,
    _row_of,
    refused,
    succeeded,
    together,
)

pytestmark = pytest.mark.slow

MIB = 1024**2


@dataclass
class Tenant:
    cli: Cli
    env: dict[str, str]
    project: str
    tmp_path: Path

    def run(self, *args: str) -> Result:
        return self.cli.run(*args, env=self.env)


@pytest.fixture
def tenant(api: Api, store: Database, tmp_path: Path) -> Tenant:
    member = new_member(api, store)
    return Tenant(Cli(tmp_path / "terminal"), member.env, member.project, tmp_path)


def qcow2(directory: Path, name: str, *extra: str, size: str = "64M") -> Path:
    path = directory / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *extra, str(path), size], check=True)
    return path


def _names(store: Database, project: str) -> list[str]:
    """The images of `project` the store holds, whatever their state."""
    with store.reading() as session:
        return list(
            session.scalars(
                select(Image.name)
                .join(Project, Project.id == Image.project_id)
                .where(Project.name == project)
            )
        )


def test_an_uploaded_qcow2_becomes_active_and_is_listed_shown_and_deleted(
    tenant: Tenant, store: Database
) -> None:
    # Preallocated, so the file is larger than any request body the API takes whole.
    disk = qcow2(tenant.tmp_path, "disk.qcow2", "-o", "preallocation=full", size="3M")
    assert disk.stat().st_size > 2 * MIB

    image = tenant.run("image", "upload", str(disk), "--name", "debian", "--json").json()

    assert (image["name"], image["state"], image["public"]) == ("debian", "active", False)
    assert image["size_bytes"] == disk.stat().st_size
    assert image["virtual_size_bytes"] == 3 * MIB
    assert image["sha256"] == hashlib.sha256(disk.read_bytes()).hexdigest()
    listed, shown, unasked = together(
        tenant.cli.start("image", "list", env=tenant.env),
        tenant.cli.start("image", "show", "debian", "--json", env=tenant.env),
        tenant.cli.start("image", "delete", "debian", env=tenant.env),
    )
    assert _row_of(succeeded(listed).stdout, "debian", image["id"], "active", "False")
    assert shown.json() == image
    refused(
        unasked, "not deleting image debian unasked: there is no terminal to ask at; give --yes"
    )

    deleted = succeeded(tenant.run("image", "delete", "debian", "--yes"))
    assert deleted.stdout == "Deleted image debian.\n"
    assert tenant.run("image", "list", "--json").json() == []


def test_a_raw_file_is_refused_with_its_format_and_nothing_is_kept(
    tenant: Tenant, store: Database
) -> None:
    raw = tenant.tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * 65536)

    refused(tenant.run("image", "upload", str(raw), "--name", "raw"), "the file is raw, not qcow2")
    assert _names(store, tenant.project) == []


def test_a_qcow2_with_a_backing_file_is_refused_with_the_reason_and_nothing_is_kept(
    tenant: Tenant, store: Database
) -> None:
    base = qcow2(tenant.tmp_path, "base.qcow2")
    overlay = qcow2(tenant.tmp_path, "overlay.qcow2", "-b", str(base), "-F", "qcow2")

    refused(
        tenant.run("image", "upload", str(overlay), "--name", "overlay"),
        f"the qcow2 image has a backing file ({base}); "
        "upload a self-contained one (qemu-img convert -O qcow2 IN OUT)",
    )
    assert _names(store, tenant.project) == []


def test_an_upload_that_cannot_start_says_why_and_makes_nothing(
    tenant: Tenant, store: Database
) -> None:
    disk = qcow2(tenant.tmp_path, "disk.qcow2")
    empty = tenant.tmp_path / "empty.qcow2"
    empty.touch()
    succeeded(tenant.run("image", "upload", str(disk), "--name", "taken"))

    missing, directory, nothing, taken, bad_name = together(
        *(
            tenant.cli.start("image", "upload", *args, env=tenant.env)
            for args in [
                ("nope.qcow2", "--name", "nope"),
                (str(tenant.tmp_path), "--name", "dir"),
                (str(empty), "--name", "empty"),
                (str(disk), "--name", "taken"),
                (str(disk), "--name", "Not A Name"),
            ]
        )
    )

    refused(missing, "cannot read nope.qcow2: no such file")
    refused(directory, f"{tenant.tmp_path} is not a regular file")
    refused(nothing, f"{empty} is empty")
    refused(taken, "there is an image in the project named 'taken' already")
    assert bad_name.returncode == 1 and "name" in bad_name.stderr, bad_name
    assert _names(store, tenant.project) == ["taken"]
