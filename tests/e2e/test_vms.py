"""VMs end to end: real QEMU under TCG, hosts as network namespaces on one underlay
bridge, each with its own agent and data dir, the control plane in the root namespace.

The user drives everything through the CLI (`nubis vm …`, `nubis image …`), as in
docs/vms.md; what the tests look at on a host (its QEMU processes, links, nftables,
files) is what an operator would find there. Each cloud has the tiny guest image as
the public image `tiny`, and the user's SSH key in their project.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from nubis.cli.vm import unseen
from nubis.images import guest, tiny
from nubis.vms import BRIDGE
from tests.e2e.cloud import Cloud, Host
from tests.e2e.conftest import CloudFactory, requires_root
from tests.e2e.processes import checked

TOOLS = (
    "qemu-system-x86_64", "qemu-img", "mkfs.vfat", "mcopy", "syslinux", "apt-get", "dpkg-deb",
    "ip", "nft", "radvd", "ssh", "ssh-keygen",
)  # fmt: skip
"""What the tiny image's build, the hosts and the user's SSH need."""
pytestmark = [
    requires_root,
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in TOOLS), reason=f"needs {', '.join(TOOLS)}"
    ),
]

IMAGE = "tiny"
KEY = "id_ed25519"
TAP_PREFIX = "nt"
MIB = 1024 * 1024
GIB = 1024**3
BOOT_SECONDS = 90.0
"""From QEMU's start to the guest's `ssh ready` (about 12 s under TCG, alone)."""
SSH_SECONDS = 30.0
SETTLE_SECONDS = 60.0
"""For the control plane to take in a change (a worker taking over a lease, a delete)."""
POLL_SECONDS = 0.2
LEASE_SECONDS = 6
"""The workers' lease in the crash test: how long a dead worker's strand stays held."""
READY = guest.READY_MARKER

T = TypeVar("T")

VmCloudFactory = Callable[..., Cloud]


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("tiny") / "tiny.qcow2")


@pytest.fixture
def vm_cloud(cloud_factory: CloudFactory, tiny_image: Path) -> VmCloudFactory:
    """`vm_cloud(hosts, **options)`: a started cloud with the public image `tiny` and
    the user's SSH key (its private half at `_key(cloud)`) in the user's project."""

    def make(hosts: int, **options: Any) -> Cloud:
        cloud = cloud_factory(hosts, **options)
        checked(cloud.admin("image", "add", str(tiny_image), "--name", IMAGE))
        key = _key(cloud)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "user@e2e", "-f", str(key)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        checked(cloud.cli("ssh-key", "add", "laptop", f"{key}.pub"))
        return cloud

    return make


def _key(cloud: Cloud) -> Path:
    return cloud.work_dir / KEY


# --- waiting -------------------------------------------------------------------------


def _wait_until(what: str, found: Callable[[], T | None], timeout: float) -> T:
    """`found()` once it is neither None nor False; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = found()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(POLL_SECONDS)


# --- what the user sees --------------------------------------------------------------


def _create(cloud: Cloud, name: str, *extra: str) -> dict[str, Any]:
    vm: dict[str, Any] = cloud.cli_json(
        "vm", "create", name, "--image", IMAGE, "--cores", "1", "--memory", "256M", *extra
    )
    return vm


def _create_together(cloud: Cloud, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """VMs created at once, each with --wait (each CLI run costs a Python start-up)."""
    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(lambda name: _create(cloud, name, "--wait"), names))


def _vms(cloud: Cloud) -> dict[str, dict[str, Any]]:
    return {vm["name"]: vm for vm in cloud.cli_json("vm", "list")}


def _console(cloud: Cloud, name: str) -> str:
    return checked(cloud.cli("vm", "log", name))


def _wait_ready(cloud: Cloud, name: str, since: str = "") -> str:
    """The console once the guest said `ssh ready` after the console tail `since`."""

    def ready() -> str | None:
        console = _console(cloud, name)
        return console if READY in unseen(since, console) else None

    return _wait_until(f"{name} says {READY!r} on its console", ready, BOOT_SECONDS)


def _ssh(cloud: Cloud, name: str, *command: str) -> str:
    """What `command` printed, run with `nubis vm ssh` (tried again while the guest's
    address is still settling)."""
    argv = ["vm", "ssh", name, "--identity", str(_key(cloud)), "--",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *command]  # fmt: skip
    last: list[subprocess.CompletedProcess[str]] = []

    def answered() -> str | None:
        done = cloud.cli(*argv)
        last[:] = [done]
        return done.stdout if done.returncode == 0 else None

    try:
        return _wait_until(f"ssh {name} {' '.join(command)}", answered, SSH_SECONDS)
    except AssertionError as error:
        raise AssertionError(f"{error}: {last[0].stderr.strip()}") from None


def _host_of(cloud: Cloud, vm: dict[str, Any]) -> Host:
    names = {row["id"]: row["name"] for row in cloud.admin_json("host", "list")}
    return cloud.host(names[vm["host"]])


def _used(row: dict[str, Any], counter: str) -> str:
    """The used part of a `used/total` column of `nubis admin host show`."""
    return str(row[counter]).split("/")[0]


def _assert_counters_are_the_vms(cloud: Cloud, host: Host) -> None:
    """The host's used cores, memory and disk are those of the VMs that exist, and the
    operator's check finds every counter equal to what is placed."""
    row = cloud.admin_json("host", "show", host.name)
    vms = [vm for vm in cloud.cli_json("vm", "list") if vm["host"] == row["id"]]
    assert int(_used(row, "cores")) == sum(vm["cores"] for vm in vms)
    assert _used(row, "memory_gib") == f"{sum(vm['memory_bytes'] for vm in vms) / GIB:g}"
    assert _used(row, "disk_gib") == f"{sum(vm['disk_bytes'] for vm in vms) / GIB:g}"
    check = cloud.admin_json("host", "check")
    assert check["differences"] == []


# --- what is on a host ---------------------------------------------------------------


def _not_the_agents(host: Host) -> list[int]:
    """Processes in the host's namespace other than the agent and its helpers (which
    run in its session: QEMU and radvd make sessions of their own)."""
    assert host.agent is not None
    strays = []
    for pid in host.pids():
        try:
            if os.getsid(pid) != host.agent.pid:
                strays.append(pid)
        except ProcessLookupError:
            continue
    return strays


def _taps(host: Host) -> list[str]:
    return [link for link in host.links() if link.startswith(TAP_PREFIX)]


def _assert_vm_left_nothing(host: Host, vm_id: str) -> None:
    assert host.qemu_pids(vm_id) == []
    assert not (host.state_dir / "vms" / vm_id).exists()


def _assert_host_is_bare(cloud: Cloud, host: Host) -> None:
    """Nothing of any VM is on the host: no process but the agent, no tap, no VM
    bridge, no VM directory, no cached image, no nftables table."""
    _wait_until(f"only the agent runs in {host.namespace}", lambda: not _not_the_agents(host), 10)
    assert _taps(host) == []
    assert BRIDGE not in host.links()
    assert list((host.state_dir / "vms").glob("*")) == []
    assert list((host.state_dir / "images").glob("*")) == []
    tables = cloud.exec_in(host, "nft", "list", "tables")
    assert (tables.returncode, tables.stdout.strip()) == (0, "")


# --- tests ---------------------------------------------------------------------------


def test_a_vm_lives_its_whole_life_through_the_cli(vm_cloud: VmCloudFactory) -> None:
    cloud = vm_cloud(2)

    created = _create(cloud, "web1", "--wait")
    assert created["state"] == "running"
    vm_id, host = created["id"], _host_of(cloud, created)
    assert len(host.qemu_pids(vm_id)) == 1
    console = _wait_ready(cloud, "web1")
    # The guest had a seed too; it says where it took its name and keys from.
    assert "nubis-tiny: config from the metadata service at" in console
    assert "nubis-tiny: hostname web1" in console
    assert "nubis-tiny: ssh keys 1" in console
    assert _ssh(cloud, "web1", "hostname") == "web1\n"
    _assert_counters_are_the_vms(cloud, host)

    assert cloud.cli_json("vm", "stop", "web1", "--wait")["state"] == "stopped"
    assert host.qemu_pids(vm_id) == []

    before = _console(cloud, "web1")
    assert cloud.cli_json("vm", "start", "web1", "--wait")["state"] == "running"
    (started,) = host.qemu_pids(vm_id)
    _wait_ready(cloud, "web1", since=before)
    assert _ssh(cloud, "web1", "hostname") == "web1\n"

    before = _console(cloud, "web1")
    asked = time.monotonic()
    assert cloud.cli_json("vm", "reboot", "web1", "--wait")["state"] == "running"
    _wait_ready(cloud, "web1", since=before)  # the console shows a second boot
    uptime = float(_ssh(cloud, "web1", "cat", "/proc/uptime").split()[0])
    assert uptime < time.monotonic() - asked
    assert host.qemu_pids(vm_id) == [started]  # a reset, not a new QEMU

    deleted = cloud.cli("vm", "delete", "web1", "--yes", "--wait")
    assert deleted.returncode == 0, deleted.stderr
    assert "VM web1 is gone." in deleted.stdout
    assert "web1" not in _vms(cloud)
    _assert_vm_left_nothing(host, vm_id)
    _assert_host_is_bare(cloud, host)
    row = cloud.admin_json("host", "show", host.name)
    assert [_used(row, c) for c in ("cores", "memory_gib", "disk_gib")] == ["0", "0", "0"]
    assert cloud.admin_json("host", "check")["differences"] == []


def test_an_uploaded_qcow2_becomes_active_and_other_files_are_refused_with_their_reason(
    vm_cloud: VmCloudFactory,
) -> None:
    cloud = vm_cloud(1)
    files = cloud.work_dir / "files"
    files.mkdir()
    good, raw, layered = files / "good.qcow2", files / "disk.raw", files / "layered.qcow2"
    for argv in (
        ["qemu-img", "create", "-q", "-f", "qcow2", str(good), "64M"],
        ["qemu-img", "create", "-q", "-f", "raw", str(raw), "16M"],
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(good), "-F", "qcow2",
         str(layered)],
    ):  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    uploaded = cloud.cli_json("image", "upload", str(good), "--name", "good")
    assert (uploaded["state"], uploaded["virtual_size_bytes"]) == ("active", 64 * MIB)

    refused_raw = cloud.cli("image", "upload", str(raw), "--name", "raw")
    assert refused_raw.returncode == 1
    assert "the file is raw, not qcow2" in refused_raw.stderr
    refused_layered = cloud.cli("image", "upload", str(layered), "--name", "layered")
    assert refused_layered.returncode == 1
    assert "the qcow2 image has a backing file" in refused_layered.stderr

    listed = {image["name"]: image["state"] for image in cloud.cli_json("image", "list")}
    assert listed == {"good": "active", IMAGE: "active"}


def test_a_killed_agent_leaves_its_vms_running_and_the_restarted_one_takes_charge(
    vm_cloud: VmCloudFactory,
) -> None:
    # A host is unreachable soon after its agent dies, and not dead for the test's life.
    quick = {"NUBIS_HOST_UNREACHABLE_SECONDS": "4", "NUBIS_HOST_DEAD_SECONDS": "600"}
    cloud = vm_cloud(1, settings=quick)
    host = cloud.host("h1")
    names = ("app1", "app2")
    ids = {vm["name"]: vm["id"] for vm in _create_together(cloud, names)}
    for name in names:
        _wait_ready(cloud, name)
    qemu = {name: host.qemu_pids(ids[name]) for name in names}
    assert all(len(pids) == 1 for pids in qemu.values())

    host.kill_agent()
    _wait_until(
        "h1 is unreachable",
        lambda: cloud.admin_json("host", "show", "h1")["health"] == "unreachable",
        SETTLE_SECONDS,
    )
    assert {name: host.qemu_pids(ids[name]) for name in names} == qemu
    host.start_agent()
    cloud.wait_online()

    assert {name: vm["state"] for name, vm in _vms(cloud).items()} == dict.fromkeys(
        names, "running"
    )
    assert {name: host.qemu_pids(ids[name]) for name in names} == qemu
    for name in names:
        assert _ssh(cloud, name, "hostname") == f"{name}\n"

    assert cloud.cli_json("vm", "stop", "app1", "--wait")["state"] == "stopped"
    assert host.qemu_pids(ids["app1"]) == []
    assert host.qemu_pids(ids["app2"]) == qemu["app2"]
    assert _vms(cloud)["app2"]["state"] == "running"


# --- a worker that dies in a label ---------------------------------------------------


def _vm_strands(cloud: Cloud) -> list[dict[str, Any]]:
    """The VM state machines not yet done, as the operator lists them."""
    return [
        strand
        for strand in cloud.admin_json("strand", "list")
        if strand["prog"].endswith(":VmNexus") and strand["status"] != "exited"
    ]


def _die_in(cloud: Cloud, label: str) -> Callable[[], list[tuple[str, bool]]]:
    """Put a worker that SIGKILLs itself in `label` (after its work, before its commit)
    in the normal worker's place; what waits for it to die there and then answers the
    VM strands' (label, held) as the dead worker left them, no worker running."""
    marker = cloud.work_dir / f"died-in-{label}"
    doomed = cloud.start_worker(
        [sys.executable, "-m", "tests.e2e.worker_faults", label, str(marker)]
    )

    def died() -> list[tuple[str, bool]]:
        _wait_until(
            f"the worker dies in {label}",
            lambda: marker.exists() or doomed.poll() is not None,
            SETTLE_SECONDS,
        )
        assert doomed.wait(10) == -signal.SIGKILL
        assert marker.exists()
        return sorted((strand["label"], strand["leased"]) for strand in _vm_strands(cloud))

    return died


def _wait_taken_over(cloud: Cloud, labels: list[str]) -> None:
    """Wait until a worker ran what the dead one held: every VM strand is active, held
    by no one and at `labels` (sorted)."""

    def settled() -> bool:
        strands = _vm_strands(cloud)
        return sorted(s["label"] for s in strands) == labels and all(
            s["status"] == "active" and not s["leased"] for s in strands
        )

    _wait_until(f"the VM strands are at {labels}", settled, SETTLE_SECONDS)


def _assert_running_once(cloud: Cloud, host: Host) -> None:
    """Every VM runs, each in exactly one QEMU, and the counters are theirs."""
    vms = _vms(cloud)
    assert {vm["state"] for vm in vms.values()} <= {"running"}
    assert {name: len(host.qemu_pids(vm["id"])) for name, vm in vms.items()} == dict.fromkeys(
        vms, 1
    )
    assert len(_taps(host)) == len(vms)
    _assert_counters_are_the_vms(cloud, host)


def _wait_gone(cloud: Cloud, name: str) -> None:
    _wait_until(f"{name} is gone", lambda: name not in _vms(cloud), SETTLE_SECONDS)


def test_a_worker_killed_in_any_label_of_create_or_delete_leaves_each_vm_once(
    vm_cloud: VmCloudFactory,
) -> None:
    # Short leases: the strand a dead worker held is taken over in seconds.
    cloud = vm_cloud(1, settings={"NUBIS_LEASE_SECONDS": str(LEASE_SECONDS)})
    host = cloud.host("h1")

    # wait_up, in the run that sees the VM running and hands over to settled: with no
    # worker up until the host runs the VM, its first run is that one.
    cloud.stop_worker()
    first = _create(cloud, "first", "--wait")
    # The hop to settled died with the worker: the strand is at wait_up, still held.
    assert _die_in(cloud, "wait_up")() == [("wait_up", True)]
    cloud.start_worker()
    _wait_taken_over(cloud, ["settled"])
    _assert_running_once(cloud, host)

    # settled, in its first run, right after wait_up handed over.
    cloud.stop_worker()
    died = _die_in(cloud, "settled")
    second = _create(cloud, "second", "--wait")
    assert died() == [("settled", False), ("settled", True)]
    cloud.start_worker()
    _wait_taken_over(cloud, ["settled", "settled"])
    _assert_running_once(cloud, host)

    # destroy.
    cloud.stop_worker()
    died = _die_in(cloud, "destroy")
    assert cloud.cli("vm", "delete", "first", "--yes").returncode == 0
    assert died() == [("destroy", True), ("settled", False)]
    assert _vms(cloud)["first"]["state"] == "deleting"
    cloud.start_worker()
    _wait_gone(cloud, "first")
    _assert_vm_left_nothing(host, first["id"])
    _assert_running_once(cloud, host)

    # wait_gone, in the run that finds the host has removed the VM and gives back what
    # it held (its first run would only nap): the host's agent is down while the VM's
    # strand gets to wait_gone, and has removed the VM before the dying worker starts.
    host.kill_agent()
    assert cloud.cli("vm", "delete", "second", "--yes").returncode == 0
    _wait_until(
        "second's strand waits in wait_gone",
        lambda: [(s["label"], s["leased"]) for s in _vm_strands(cloud)] == [("wait_gone", False)],
        SETTLE_SECONDS,
    )
    cloud.stop_worker()
    host.start_agent()
    _wait_until(
        "h1 reports that it removed second",
        lambda: any(
            event.endswith(f"removed: vm {second['id']}")
            for event in cloud.admin_json("host", "show", "h1")["events"]
        ),
        SETTLE_SECONDS,
    )
    # Giving back and forgetting the VM died with the worker: it is still there.
    assert _die_in(cloud, "wait_gone")() == [("wait_gone", True)]
    assert _vms(cloud)["second"]["state"] == "deleting"
    cloud.start_worker()
    _wait_gone(cloud, "second")
    assert _vm_strands(cloud) == []
    _assert_vm_left_nothing(host, second["id"])
    _assert_host_is_bare(cloud, host)
    _assert_counters_are_the_vms(cloud, host)
    assert [s for s in cloud.admin_json("strand", "list") if s["status"] == "failed"] == []
