"""`nubis vm …` as people use it: the real `nubis` command against a real `nubis api`
over each store, with a host whose agent the test plays.

The host (`Host`) runs in a thread: it steps the engine, as `nubis worker` would, and
does at once what its desired state says, reporting back as an agent does. So
`--wait` sees a VM go through the states it would on a real host, only faster.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select as query
from sqlalchemy import update

from nubis import hosts, locations
from nubis.config import Settings
from nubis.db import Database
from nubis.engine.dispatcher import Dispatcher
from nubis.ids import Kind, parse_id
from nubis.models import Image, ImageState, SshKey, Vm
from nubis.protocol import Desired
from nubis.sshkey import parse
from tests.integration.api.test_agent import REPORT
from tests.integration.cli.conftest import Api, new_member, nubis_command
from tests.integration.cli.test_user_cli import (
    COMMAND_SECONDS,
    Cli,
    Result,
    _public_key,
    _row_of,
    refused,
    succeeded,
    together,
)
from tests.integration.engine.helpers import drain

pytestmark = pytest.mark.slow

GIB = 1024**3
STEP_SECONDS = 0.1
REBOOT_SECONDS = 1.5
"""How long the played host takes over a reboot: long enough for `--wait` to see it."""
PREFIXES = itertools.count(0x100)


@dataclass
class Host:
    """A host's agent, played by a thread of the test."""

    api: Api
    credential: str
    name: str
    failing: dict[str, str] = field(default_factory=dict)
    """VM name -> the error the host reports for it instead of running it."""
    silent: set[str] = field(default_factory=set)
    """VMs (by name) the host never reports on, as if it were still preparing them."""
    consoles: dict[str, str] = field(default_factory=dict)
    """VM name -> its console tail, reported when it changes."""
    reboots: list[int] = field(default_factory=list)
    """The reboot requests carried out, as reported."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sent_console: dict[str, str] = {}
        self._rebooting: dict[str, float] = {}
        self._done_reboots: dict[str, int] = {}
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        db = Database.connect(self.api.database_url)
        dispatcher = Dispatcher(db, Settings(lease_seconds=30))
        auth = {"Authorization": f"Bearer {self.credential}"}
        try:
            with httpx.Client(base_url=self.api.url, headers=auth, timeout=30) as client:
                while not self._stop.is_set():
                    drain(dispatcher)
                    answer = client.get("/v1/agent/desired")
                    assert answer.status_code == 200, answer.text
                    status = self._status(Desired.model_validate(answer.json()))
                    sent = client.post("/v1/agent/status", json=status)
                    assert sent.status_code == 204, sent.text
                    self._stop.wait(STEP_SECONDS)
        except BaseException as error:
            self.error = error
        finally:
            db.dispose()

    def _status(self, desired: Desired) -> dict[str, Any]:
        vms = []
        for spec in desired.vms:
            name = spec.hostname
            if name in self.silent:
                continue
            report: dict[str, Any] = {"id": spec.id, "reboots": self._reboots(name, spec.reboots)}
            if name in self.failing:
                report |= {"state": "error", "detail": self.failing[name]}
            else:
                report["state"] = "running" if spec.running else "stopped"
            console = self.consoles.get(name)
            if console is not None and console != self._sent_console.get(name):
                report["console"] = self._sent_console[name] = console
            vms.append(report)
        return {"revision": desired.revision, "vms": vms}

    def _reboots(self, name: str, asked: int) -> int:
        """The reboots carried out: each takes REBOOT_SECONDS."""
        done = self._done_reboots.get(name, 0)
        if asked > done:
            began = self._rebooting.setdefault(name, time.monotonic())
            if time.monotonic() - began >= REBOOT_SECONDS:
                del self._rebooting[name]
                self._done_reboots[name] = done = asked
                self.reboots.append(asked)
        return done


@dataclass
class Tenant:
    """A person with a project of their own, an active image in it, and a location with
    a host for its VMs."""

    cli: Cli
    env: dict[str, str]
    project: str
    location: str
    host: Host
    tmp_path: Path

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.cli.run(*args, env={**self.env, **(env or {})})

    def start(self, *args: str) -> Any:
        return self.cli.start(*args, env=self.env)

    def create(self, name: str, *options: str) -> Result:
        return self.run("vm", "create", name, "--image", "tiny", "--location", self.location,
                        *options)  # fmt: skip


def _register(api: Api, store: Database, tag: str) -> tuple[str, Host]:
    """A location of its own and a host joined to it through the agent API."""
    location = f"loc-{tag}"
    with store.transaction() as session:
        made = locations.create(
            session, location, f"2001:db8:{next(PREFIXES):x}::/48", flooding="unicast"
        )
        token = hosts.issue_join_token(session, made.id, timedelta(hours=1))
    name = f"h-{tag}"
    answer = httpx.post(
        f"{api.url}/v1/agent/register",
        json={"join_token": token, "host": {**REPORT, "name": name}},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return location, Host(api, answer.json()["credential"], name)


@pytest.fixture
def tenant(api: Api, store: Database, tmp_path: Path) -> Iterator[Tenant]:
    member = new_member(api, store)
    tag = member.tag
    with store.transaction() as session:
        session.add(
            Image(
                project_id=member.project_id,
                name="tiny",
                state=ImageState.ACTIVE,
                size_bytes=2**20,
                virtual_size_bytes=GIB,
                sha256="ab" * 32,
            )
        )
        key = parse(_public_key(tmp_path, "laptop").read_text())
        session.add(
            SshKey(
                project_id=member.project_id,
                name="laptop",
                public_key=key.line,
                fingerprint=key.fingerprint,
            )
        )
    location, host = _register(api, store, tag)
    cli = Cli(tmp_path / "terminal")
    host.start()
    try:
        yield Tenant(cli, member.env, member.project, location, host, tmp_path)
    finally:
        host.stop()


def _stored(store: Database, vm_id: str) -> Vm:
    with store.reading() as session:
        return session.scalars(query(Vm).where(Vm.id == parse_id(Kind.VM, vm_id))).one()


def test_a_vm_is_created_with_the_keys_and_user_data_given_and_waited_for_until_it_runs(
    tenant: Tenant, store: Database
) -> None:
    key_file = _public_key(tenant.tmp_path, "desk")
    user_data = tenant.tmp_path / "user-data"
    user_data.write_text("#cloud-config\nhostname: web1\n")

    created = tenant.create(
        "web1", "--cores", "2", "--memory", "512M", "--disk", "2G",
        "--ssh-key", str(key_file), "--ssh-key", "laptop", "--user-data", str(user_data),
        "--wait", "--json",
    )  # fmt: skip

    vm = created.json()
    assert (vm["name"], vm["state"], vm["cores"]) == ("web1", "running", 2)
    assert (vm["memory_bytes"], vm["disk_bytes"]) == (512 * 2**20, 2 * GIB)
    stored = _stored(store, vm["id"])
    assert stored.user_data == "#cloud-config\nhostname: web1\n"
    laptop = (tenant.tmp_path / "laptop_ed25519.pub").read_text().split()[:2]
    assert [line.split()[:2] for line in stored.ssh_keys] == [
        key_file.read_text().split()[:2],
        laptop,
    ]


def test_a_vm_is_listed_and_shown_with_its_state_host_and_address(tenant: Tenant) -> None:
    vm = tenant.create("web1", "--memory", "512M", "--wait", "--json").json()
    address = vm["nics"][0]["address"]

    listed, as_json, shown = together(
        tenant.start("vm", "list"),
        tenant.start("vm", "list", "--json"),
        tenant.start("vm", "show", "web1"),
    )

    assert _row_of(
        succeeded(listed).stdout, "web1", vm["id"], "running", "1", "512 MiB", tenant.host.name,
        address,
    )  # fmt: skip
    assert [v["id"] for v in as_json.json()] == [vm["id"]]
    text = succeeded(shown).stdout
    shown_fields = [
        ("state", "running"), ("memory", "512 MiB"), ("disk", "1 GiB"), ("host", tenant.host.name),
    ]  # fmt: skip
    for name, value in shown_fields:
        assert any(line.split() == [name, *value.split()] for line in text.splitlines()), text
    assert _row_of(text, "0", "host", vm["nics"][0]["mac"], address)


def test_stop_start_reboot_and_delete_each_wait_for_their_end(tenant: Tenant) -> None:
    succeeded(tenant.create("web1", "--wait"))

    stopped = succeeded(tenant.run("vm", "stop", "web1", "--wait"))
    assert stopped.stdout.endswith("VM web1 is stopped.\n"), stopped
    refused(
        tenant.run("vm", "reboot", "web1", "--wait"),
        "VM web1 is stopped: start it instead of rebooting it",
    )
    started = tenant.run("vm", "start", "web1", "--wait", "--json").json()
    assert (started["state"], started["reboots"]) == ("running", 0)
    rebooted = tenant.run("vm", "reboot", "web1", "--wait", "--json").json()
    # It waited for the host to report the reboot, not just for `running`.
    assert (rebooted["state"], rebooted["reboots"]) == ("running", 1)
    assert tenant.host.reboots == [1]
    deleted = succeeded(tenant.run("vm", "delete", "web1", "--yes", "--wait"))
    assert deleted.stdout == "VM web1 is deleting.\nVM web1 is gone.\n"
    refused(tenant.run("vm", "show", "web1"), "no VM 'web1'")


def test_a_vm_that_fails_ends_the_wait_with_its_reason(tenant: Tenant) -> None:
    tenant.host.failing["web1"] = "qemu exited: could not open the disk"

    failed = tenant.create("web1", "--wait")

    assert failed.returncode == 1, failed
    assert failed.stderr == "error: VM web1 failed: qemu exited: could not open the disk\n"


def test_a_wait_that_runs_out_of_time_exits_124_with_the_state_reached(tenant: Tenant) -> None:
    tenant.host.silent.add("web1")

    late = tenant.create("web1", "--wait", "--timeout", "1")

    assert late.returncode == 124, late
    assert late.stderr == "error: VM web1 is still creating, not running, after 1 s\n"


def test_delete_without_yes_and_without_a_terminal_to_ask_at_is_refused(tenant: Tenant) -> None:
    succeeded(tenant.create("web1"))

    refused(
        tenant.run("vm", "delete", "web1"),
        "not deleting VM web1 unasked: there is no terminal to ask at; give --yes",
    )
    assert tenant.run("vm", "show", "web1", "--json").json()["state"] != "deleting"


def test_bad_input_is_refused_with_the_reason(tenant: Tenant) -> None:
    private = tenant.tmp_path / "laptop_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    unitless, no_key, private_key, no_image, no_vm = together(
        tenant.start("vm", "create", "web1", "--image", "tiny", "--memory", "512"),
        tenant.start("vm", "create", "web1", "--image", "tiny", "--ssh-key", "nokey"),
        tenant.start("vm", "create", "web1", "--image", "tiny", "--ssh-key", str(private)),
        tenant.start("vm", "create", "web1", "--image", "huge", "--location", tenant.location),
        tenant.start("vm", "stop", "web9"),
    )
    assert unitless.returncode == 1 and "'512' is not a size" in unitless.stderr, unitless
    refused(
        no_key,
        f"--ssh-key nokey: no such file, and project {tenant.project} has no SSH key of that name",
    )
    refused(private_key, f"{private} is a private key: give its public half ({private}.pub)")
    refused(no_image, "no image 'huge'")
    refused(no_vm, "no VM 'web9'")


@dataclass
class Spawned:
    """A command run with SIGINT at its default, so Ctrl-C reaches it even where the test
    runner ignores SIGINT (an ignored signal stays ignored across exec)."""

    pid: int
    stdout: int
    stderr: int

    @classmethod
    def of(cls, args: list[str], env: dict[str, str]) -> Spawned:
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out_write, 1),
            (os.POSIX_SPAWN_DUP2, err_write, 2),
            (os.POSIX_SPAWN_CLOSE, out_read),
            (os.POSIX_SPAWN_CLOSE, err_read),
        ]
        try:
            pid = os.posix_spawn(
                args[0], args, env, file_actions=actions, setsigdef=[signal.SIGINT]
            )
        finally:
            os.close(out_write)
            os.close(err_write)
        return cls(pid, out_read, err_read)

    def read_until(self, wanted: bytes) -> bytes:
        """What it printed, once that holds `wanted` (the test fails after a while)."""
        got = b""
        deadline = time.monotonic() + COMMAND_SECONDS
        while wanted not in got:
            left = deadline - time.monotonic()
            assert left > 0, f"waited for {wanted!r}; got {got!r}"
            ready, _, _ = select.select([self.stdout], [], [], left)
            if ready:
                chunk = os.read(self.stdout, 65536)
                assert chunk, f"the command ended; it printed {got!r}"
                got += chunk
        return got

    def interrupt(self) -> tuple[int, bytes]:
        """Ctrl-C; its exit code and what it printed on stderr."""
        os.kill(self.pid, signal.SIGINT)
        deadline = time.monotonic() + COMMAND_SECONDS
        while (done := os.waitpid(self.pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                pytest.fail("the command did not end on Ctrl-C")
            time.sleep(0.05)
        errors = b""
        while chunk := os.read(self.stderr, 65536):
            errors += chunk
        os.close(self.stdout)
        os.close(self.stderr)
        return os.waitstatus_to_exitcode(done[1]), errors


def test_the_console_is_printed_and_followed_without_repeating_what_was_shown(
    tenant: Tenant,
) -> None:
    tenant.host.consoles["web1"] = "SeaBIOS\nBooting from Hard Disk...\n"
    succeeded(tenant.create("web1", "--wait"))
    for _ in range(100):  # the console comes with the host's next report
        if tenant.run("vm", "log", "web1").stdout:
            break
        time.sleep(0.1)

    log = succeeded(tenant.run("vm", "log", "web1"))
    assert log.stdout == "SeaBIOS\nBooting from Hard Disk...\n"

    follow = Spawned.of(
        [*nubis_command(), "vm", "console", "web1", "--follow"],
        {**tenant.cli.environment, **tenant.env},
    )
    try:
        first = follow.read_until(b"Hard Disk...\n")
        tenant.host.consoles["web1"] = "Booting from Hard Disk...\nLinux version 6.1\nweb1 login: "
        rest = follow.read_until(b"login: ")
    finally:
        code, errors = follow.interrupt()
    assert first + rest == b"SeaBIOS\nBooting from Hard Disk...\nLinux version 6.1\nweb1 login: "
    assert code == 130, errors
    assert errors == b""


def test_ssh_runs_ssh_to_the_vm_address_with_its_host_key_kept_under_the_vm_id(
    tenant: Tenant,
) -> None:
    vm = tenant.create("web1", "--wait", "--json").json()
    tools = tenant.tmp_path / "bin"
    tools.mkdir()
    # Stands in for OpenSSH's ssh, which would need a VM with an SSH server to reach.
    (tools / "ssh").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (tools / "ssh").chmod(0o755)
    home = tenant.cli.home / "home"
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ecdsa").write_text("a private key\n")
    path = {"PATH": f"{tools}:{os.environ['PATH']}"}

    ssh = succeeded(tenant.run("vm", "ssh", "web1", "--", "-p", "2222", "uname", "-a", env=path))

    known = tenant.cli.config_path.parent / "known_hosts"
    assert ssh.stdout.splitlines() == [
        "-o", "ConnectionAttempts=30",
        "-o", f"HostKeyAlias={vm['id']}",
        "-o", f"UserKnownHostsFile={known}",
        "-o", "StrictHostKeyChecking=accept-new",
        "-i", str(home / ".ssh" / "id_ecdsa"),
        "-l", "root",
        vm["nics"][0]["address"],
        "-p", "2222", "uname", "-a",
    ]  # fmt: skip
    assert known.parent.is_dir()

    succeeded(tenant.run("vm", "stop", "web1", "--wait"))
    refused(tenant.run("vm", "ssh", "web1", env=path), "VM web1 is stopped, not running")


def test_ssh_logs_in_as_the_image_s_login_user_unless_told_otherwise(
    tenant: Tenant, store: Database
) -> None:
    with store.transaction() as session:
        session.execute(update(Image).where(Image.name == "tiny").values(login_user="debian"))
    tenant.create("web1", "--wait")
    tools = tenant.tmp_path / "bin"
    tools.mkdir()
    (tools / "ssh").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (tools / "ssh").chmod(0o755)
    path = {"PATH": f"{tools}:{os.environ['PATH']}"}

    as_image = succeeded(tenant.run("vm", "ssh", "web1", env=path)).stdout.splitlines()
    as_told = succeeded(tenant.run("vm", "ssh", "web1", "--user", "root", env=path)).stdout

    assert as_image[as_image.index("-l") + 1] == "debian"
    assert as_told.splitlines()[as_told.splitlines().index("-l") + 1] == "root"


def test_create_without_wait_answers_at_once_with_the_vm_creating(tenant: Tenant) -> None:
    tenant.host.silent.add("web1")

    made = tenant.create("web1", "--json").json()

    assert made["state"] == "creating"
