"""VMs end to end: real QEMU under TCG, hosts as network namespaces on one underlay
bridge, each with its own agent and data dir, the control plane in the root namespace.

The user drives everything through the CLI (`nubis vm …`, `nubis image …`), as in
docs/vms.md; what the tests look at on a host (its QEMU processes, links, nftables,
files) is what an operator would find there. Each cloud has the tiny guest image as
the public image `tiny`, and the user's SSH key in their project.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from nubis.vms import BRIDGE
from tests.e2e.cloud import Cloud, Host
from tests.e2e.conftest import CloudFactory
from tests.e2e.guests import (
    IMAGE,
    NEEDS_GUESTS,
    console,
    create,
    create_together,
    host_of,
    ssh,
    vms,
    wait_ready,
    wait_until,
)

pytestmark = NEEDS_GUESTS

TAP_PREFIX = "nt"
MIB = 1024 * 1024
GIB = 1024**3
SETTLE_SECONDS = 60.0
"""For the control plane to take in a change (a worker taking over a lease, a delete)."""
LEASE_SECONDS = 6
"""The workers' lease in the crash test: how long a dead worker's strand stays held."""


# --- what the user sees --------------------------------------------------------------


def _used(row: dict[str, Any], counter: str) -> str:
    """The used part of a `used/total` column of `nubis admin host show`."""
    return str(row[counter]).split("/")[0]


def _assert_counters_are_the_vms(cloud: Cloud, host: Host) -> None:
    """The host's used cores, memory and disk are those of the VMs that exist, and the
    operator's check finds every counter equal to what is placed."""
    row = cloud.admin_json("host", "show", host.name)
    here = [vm for vm in cloud.cli_json("vm", "list") if vm["host"] == row["id"]]
    assert int(_used(row, "cores")) == sum(vm["cores"] for vm in here)
    assert _used(row, "memory_gib") == f"{sum(vm['memory_bytes'] for vm in here) / GIB:g}"
    assert _used(row, "disk_gib") == f"{sum(vm['disk_bytes'] for vm in here) / GIB:g}"
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
    wait_until(f"only the agent runs in {host.namespace}", lambda: not _not_the_agents(host), 10)
    assert _taps(host) == []
    assert BRIDGE not in host.links()
    assert list((host.state_dir / "vms").glob("*")) == []
    assert list((host.state_dir / "images").glob("*")) == []
    tables = cloud.exec_in(host, "nft", "list", "tables")
    assert (tables.returncode, tables.stdout.strip()) == (0, "")


# --- tests ---------------------------------------------------------------------------


def test_a_vm_lives_its_whole_life_through_the_cli(vm_cloud: CloudFactory) -> None:
    cloud = vm_cloud(2)

    created = create(cloud, "web1", "--wait")
    assert created["state"] == "running"
    vm_id, host = created["id"], host_of(cloud, created)
    assert len(host.qemu_pids(vm_id)) == 1
    first_boot = wait_ready(cloud, "web1")
    # The guest had a seed too; it says where it took its name and keys from.
    assert "nubis-tiny: config from the metadata service at" in first_boot
    assert "nubis-tiny: hostname web1" in first_boot
    assert "nubis-tiny: ssh keys 1" in first_boot
    assert ssh(cloud, "web1", "hostname") == "web1\n"
    _assert_counters_are_the_vms(cloud, host)

    assert cloud.cli_json("vm", "stop", "web1", "--wait")["state"] == "stopped"
    assert host.qemu_pids(vm_id) == []

    before = console(cloud, "web1")
    assert cloud.cli_json("vm", "start", "web1", "--wait")["state"] == "running"
    (started,) = host.qemu_pids(vm_id)
    wait_ready(cloud, "web1", since=before)
    assert ssh(cloud, "web1", "hostname") == "web1\n"

    before = console(cloud, "web1")
    asked = time.monotonic()
    assert cloud.cli_json("vm", "reboot", "web1", "--wait")["state"] == "running"
    wait_ready(cloud, "web1", since=before)  # the console shows a second boot
    uptime = float(ssh(cloud, "web1", "cat", "/proc/uptime").split()[0])
    assert uptime < time.monotonic() - asked
    assert host.qemu_pids(vm_id) == [started]  # a reset, not a new QEMU

    deleted = cloud.cli("vm", "delete", "web1", "--yes", "--wait")
    assert deleted.returncode == 0, deleted.stderr
    assert "VM web1 is gone." in deleted.stdout
    assert "web1" not in vms(cloud)
    _assert_vm_left_nothing(host, vm_id)
    _assert_host_is_bare(cloud, host)
    row = cloud.admin_json("host", "show", host.name)
    assert [_used(row, c) for c in ("cores", "memory_gib", "disk_gib")] == ["0", "0", "0"]
    assert cloud.admin_json("host", "check")["differences"] == []


def test_an_uploaded_qcow2_becomes_active_and_other_files_are_refused_with_their_reason(
    vm_cloud: CloudFactory,
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
    vm_cloud: CloudFactory,
) -> None:
    # A host is unreachable soon after its agent dies, and not dead for the test's life.
    quick = {"NUBIS_HOST_UNREACHABLE_SECONDS": "4", "NUBIS_HOST_DEAD_SECONDS": "600"}
    cloud = vm_cloud(1, settings=quick)
    host = cloud.host("h1")
    names = ("app1", "app2")
    ids = {vm["name"]: vm["id"] for vm in create_together(cloud, names)}
    for name in names:
        wait_ready(cloud, name)
    qemu = {name: host.qemu_pids(ids[name]) for name in names}
    assert all(len(pids) == 1 for pids in qemu.values())

    host.kill_agent()
    wait_until(
        "h1 is unreachable",
        lambda: cloud.admin_json("host", "show", "h1")["health"] == "unreachable",
        SETTLE_SECONDS,
    )
    assert {name: host.qemu_pids(ids[name]) for name in names} == qemu
    host.start_agent()
    cloud.wait_online()

    assert {name: vm["state"] for name, vm in vms(cloud).items()} == dict.fromkeys(names, "running")
    assert {name: host.qemu_pids(ids[name]) for name in names} == qemu
    for name in names:
        assert ssh(cloud, name, "hostname") == f"{name}\n"

    assert cloud.cli_json("vm", "stop", "app1", "--wait")["state"] == "stopped"
    assert host.qemu_pids(ids["app1"]) == []
    assert host.qemu_pids(ids["app2"]) == qemu["app2"]
    assert vms(cloud)["app2"]["state"] == "running"


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
        wait_until(
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

    wait_until(f"the VM strands are at {labels}", settled, SETTLE_SECONDS)


def _assert_running_once(cloud: Cloud, host: Host) -> None:
    """Every VM runs, each in exactly one QEMU, and the counters are theirs."""
    listed = vms(cloud)
    assert {vm["state"] for vm in listed.values()} <= {"running"}
    assert {name: len(host.qemu_pids(vm["id"])) for name, vm in listed.items()} == dict.fromkeys(
        listed, 1
    )
    assert len(_taps(host)) == len(listed)
    _assert_counters_are_the_vms(cloud, host)


def _wait_gone(cloud: Cloud, name: str) -> None:
    wait_until(f"{name} is gone", lambda: name not in vms(cloud), SETTLE_SECONDS)


def test_a_worker_killed_in_any_label_of_create_or_delete_leaves_each_vm_once(
    vm_cloud: CloudFactory,
) -> None:
    # Short leases: the strand a dead worker held is taken over in seconds.
    cloud = vm_cloud(1, settings={"NUBIS_LEASE_SECONDS": str(LEASE_SECONDS)})
    host = cloud.host("h1")

    # wait_up, in the run that sees the VM running and hands over to settled: with no
    # worker up until the host runs the VM, its first run is that one.
    cloud.stop_worker()
    first = create(cloud, "first", "--wait")
    # The hop to settled died with the worker: the strand is at wait_up, still held.
    assert _die_in(cloud, "wait_up")() == [("wait_up", True)]
    cloud.start_worker()
    _wait_taken_over(cloud, ["settled"])
    _assert_running_once(cloud, host)

    # settled, in its first run, right after wait_up handed over.
    cloud.stop_worker()
    died = _die_in(cloud, "settled")
    second = create(cloud, "second", "--wait")
    assert died() == [("settled", False), ("settled", True)]
    cloud.start_worker()
    _wait_taken_over(cloud, ["settled", "settled"])
    _assert_running_once(cloud, host)

    # destroy.
    cloud.stop_worker()
    died = _die_in(cloud, "destroy")
    assert cloud.cli("vm", "delete", "first", "--yes").returncode == 0
    assert died() == [("destroy", True), ("settled", False)]
    assert vms(cloud)["first"]["state"] == "deleting"
    cloud.start_worker()
    _wait_gone(cloud, "first")
    _assert_vm_left_nothing(host, first["id"])
    _assert_running_once(cloud, host)

    # wait_gone, in the run that finds the host has removed the VM and gives back what
    # it held (its first run would only nap): the host's agent is down while the VM's
    # strand gets to wait_gone, and has removed the VM before the dying worker starts.
    host.kill_agent()
    assert cloud.cli("vm", "delete", "second", "--yes").returncode == 0
    wait_until(
        "second's strand waits in wait_gone",
        lambda: [(s["label"], s["leased"]) for s in _vm_strands(cloud)] == [("wait_gone", False)],
        SETTLE_SECONDS,
    )
    cloud.stop_worker()
    host.start_agent()
    wait_until(
        "h1 reports that it removed second",
        lambda: any(
            event.endswith(f"removed: vm {second['id']}")
            for event in cloud.admin_json("host", "show", "h1")["events"]
        ),
        SETTLE_SECONDS,
    )
    # Giving back and forgetting the VM died with the worker: it is still there.
    assert _die_in(cloud, "wait_gone")() == [("wait_gone", True)]
    assert vms(cloud)["second"]["state"] == "deleting"
    cloud.start_worker()
    _wait_gone(cloud, "second")
    assert _vm_strands(cloud) == []
    _assert_vm_left_nothing(host, second["id"])
    _assert_host_is_bare(cloud, host)
    _assert_counters_are_the_vms(cloud, host)
    assert [s for s in cloud.admin_json("strand", "list") if s["status"] == "failed"] == []
