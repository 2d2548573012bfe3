"""`nubis admin image …`, as an operator runs it against the API, over each store, with
files made by `qemu-img` and streamed to the API."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from nubis import locations
from nubis.cli import app
from nubis.config import Settings
from nubis.db import Database
from nubis.guestimage import tiny
from nubis.images import public, store
from nubis.models import Flooding, Image, Project, Vm
from tests.integration.cli.conftest import Remote

MIB = 1024**2

pytestmark = pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img")


@pytest.fixture
def data_dir(remote: Remote) -> Path:
    """The API's: where the images it takes are kept."""
    return remote.data_dir


@pytest.fixture
def cli(remote: Remote) -> CliRunner:
    """An operator's CLI, against the API over the test's database."""
    return remote.operator


def _run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, ["admin", "image", *args])


def qcow2(directory: Path, name: str, size: str = "64M") -> Path:
    path = directory / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def _listed(cli: CliRunner) -> list[dict[str, object]]:
    listed = _run(cli, "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows: list[dict[str, object]] = json.loads(listed.stdout)
    return rows


def _stored_files(data_dir: Path) -> list[str]:
    images = store.directory(data_dir)
    return sorted(path.name for path in images.iterdir()) if images.exists() else []


def test_an_added_qcow2_is_an_active_public_image_with_its_sizes_and_hash(
    cli: CliRunner, data_dir: Path, tmp_path: Path
) -> None:
    source = qcow2(tmp_path, "debian.qcow2", "64M")
    added = _run(cli, "add", str(source), "--name", "debian", "--json")
    assert added.exit_code == 0, added.output
    shown = json.loads(added.stdout)
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    assert (shown["name"], shown["state"], shown["sha256"]) == ("debian", "active", sha256)
    assert shown["virtual_size_bytes"] == 64 * MIB
    assert shown["size_bytes"] == source.stat().st_size

    (row,) = _listed(cli)
    assert (row["name"], row["id"], row["state"], row["vms"]) == (
        "debian", shown["id"], "active", 0,
    )  # fmt: skip
    assert _stored_files(data_dir) == [f"{shown['id']}.qcow2"]
    table = _run(cli, "list")
    assert "debian" in table.stdout and shown["id"] in table.stdout


def test_a_raw_file_is_refused_with_the_reason_and_leaves_nothing(
    cli: CliRunner, data_dir: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * MIB)
    refused = _run(cli, "add", str(raw), "--name", "raw")
    assert refused.exit_code == 1
    assert "the file is raw, not qcow2" in refused.stderr
    assert _listed(cli) == []
    assert _stored_files(data_dir) == []


def test_a_missing_file_or_a_taken_name_is_refused(
    cli: CliRunner, data_dir: Path, tmp_path: Path
) -> None:
    missing = _run(cli, "add", str(tmp_path / "nowhere.qcow2"), "--name", "gone")
    assert missing.exit_code == 1
    assert "no such file" in missing.stderr
    source = qcow2(tmp_path, "a.qcow2")
    assert _run(cli, "add", str(source), "--name", "same").exit_code == 0
    again = _run(cli, "add", str(source), "--name", "same")
    assert again.exit_code == 1
    assert "there is a public image named 'same' already" in again.stderr
    assert [row["name"] for row in _listed(cli)] == ["same"]
    assert len(_stored_files(data_dir)) == 1


def test_deleting_an_image_removes_its_row_and_its_file(
    cli: CliRunner, data_dir: Path, tmp_path: Path
) -> None:
    _run(cli, "add", str(qcow2(tmp_path, "a.qcow2")), "--name", "old")
    deleted = _run(cli, "delete", "old")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout == "Deleted public image old.\n"
    assert _listed(cli) == []
    assert _stored_files(data_dir) == []
    gone = _run(cli, "delete", "old")
    assert gone.exit_code == 1
    assert "no image 'old'" in gone.stderr


def test_an_image_a_vm_uses_cannot_be_deleted(
    cli: CliRunner, db: Database, data_dir: Path, tmp_path: Path
) -> None:
    _run(cli, "add", str(qcow2(tmp_path, "a.qcow2")), "--name", "base")
    with db.transaction() as session:
        image = session.scalars(select(Image).where(Image.name == "base")).one()
        location = locations.create(session, "fra1", "2001:db8:1::/48", flooding=Flooding.MULTICAST)
        project = Project(name="acme")
        session.add(project)
        session.flush()
        session.add(
            Vm(project_id=project.id, name="web1", location_id=location.id, image_id=image.id,
               cores=1, memory_bytes=512 * MIB, disk_bytes=1024 * MIB, ssh_keys=[])
        )  # fmt: skip
    refused = _run(cli, "delete", "base")
    assert refused.exit_code == 1
    assert "image base is in use by VM web1" in refused.stderr
    (row,) = _listed(cli)
    assert row["vms"] == 1
    assert len(_stored_files(data_dir)) == 1


def test_build_tiny_without_a_destination_is_refused(cli: CliRunner) -> None:
    refused = _run(cli, "build-tiny", "--no-register")
    assert refused.exit_code == 1
    assert "give --output" in refused.stderr


def test_build_tiny_refuses_a_taken_name_before_building(cli: CliRunner, tmp_path: Path) -> None:
    _run(cli, "add", str(qcow2(tmp_path, "a.qcow2")), "--name", "tiny")
    cache = tmp_path / "never-made"
    refused = _run(cli, "build-tiny", "--cache", str(cache))
    assert refused.exit_code == 1
    assert "there is a public image named 'tiny' already" in refused.stderr
    assert not cache.exists()


def test_ensure_tiny_leaves_a_public_tiny_image_as_it_is(
    db: Database, data_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=data_dir)
    first = public.register(db, settings, tiny.NAME, qcow2(tmp_path, "tiny.qcow2"))
    cache = tmp_path / "never-made"
    public.ensure_tiny(db, settings, cache=cache)
    with db.reading() as session:
        images = session.scalars(select(Image)).all()
    assert [(image.id, image.name) for image in images] == [(first.id, "tiny")]
    assert not cache.exists()


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("apt-get", "dpkg-deb", "syslinux")),
    reason="builds from Debian packages in the shared cache (root, apt, syslinux)",
)
def test_build_tiny_builds_and_registers_the_tiny_image_and_ensure_tiny_then_does_nothing(
    cli: CliRunner, db: Database, data_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "tiny.qcow2"
    built = _run(cli, "build-tiny", "--output", str(output))
    assert built.exit_code == 0, built.output
    (row,) = _listed(cli)
    assert (row["name"], row["state"]) == ("tiny", "active")
    assert row["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    public.ensure_tiny(db, Settings(data_dir=data_dir))
    assert [r["id"] for r in _listed(cli)] == [row["id"]]


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("apt-get", "dpkg-deb", "syslinux")),
    reason="builds from Debian packages in the shared cache (root, apt, syslinux)",
)
def test_two_ensure_tiny_at_once_add_one_image(
    cli: CliRunner, db: Database, data_dir: Path
) -> None:
    settings = Settings(data_dir=data_dir)
    failures: list[BaseException] = []

    def ensure() -> None:
        try:
            public.ensure_tiny(db, settings)
        except BaseException as error:
            failures.append(error)

    racers = [threading.Thread(target=ensure) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert failures == []
    (row,) = _listed(cli)
    assert (row["name"], row["state"]) == ("tiny", "active")
    assert _stored_files(data_dir) == [f"{row['id']}.qcow2"]
