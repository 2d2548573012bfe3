"""The e2e harness itself: a cloud of namespace hosts comes online, survives an agent
crash, and leaves nothing behind, however its `with` block ends."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import namespaces
from tests.e2e.cloud import Cloud, CloudError
from tests.e2e.conftest import CloudFactory, requires_root
from tests.e2e.namespaces import Names, recorded
from tests.e2e.processes import REPO, Process, wait_gone

pytestmark = [requires_root, pytest.mark.slow]

# A stand-in for `qemu -daemonize` and radvd: a process in a session of its own,
# whose parent has exited, inside a host's namespace.
DAEMON = "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!"

# A test run killed (SIGKILL) while its cloud is up: nothing of the cloud is removed.
KILLED_RUN = """
import time
from tests.e2e.cloud import Cloud
cloud = Cloud(1)
cloud.start()
print(cloud.suffix, flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with Cloud(3) as made:
        yield made


def _hosts(cloud: Cloud) -> dict[str, dict[str, str]]:
    return {row["name"]: row for row in cloud.admin_json("host", "list")}


def _daemon_in(cloud: Cloud, host: str) -> Process:
    done = cloud.exec_in(host, "sh", "-c", DAEMON)
    assert done.returncode == 0, done.stderr
    started = Process.of("daemon", int(done.stdout))
    assert started is not None
    return started


def _what_runs(cloud: Cloud) -> set[Process]:
    """Every process the cloud started or that runs in its namespaces, as of now."""
    inside = {
        process
        for namespace in Names(cloud.suffix).namespaces()
        for pid in namespaces.pids_in(namespace)
        if (process := Process.of(namespace, pid)) is not None
    }
    return inside | set(cloud.recorded)


def _assert_nothing_remains(names: Names, processes: set[Process]) -> None:
    assert names.namespaces() == []
    assert [link for link in namespaces.links() if link.startswith(names.bridge)] == []
    assert [process for process in processes if process.alive()] == []
    assert not names.work_dir.exists()


def test_every_host_comes_online_with_its_underlay_address(cloud: Cloud) -> None:
    listed = _hosts(cloud)
    assert sorted(listed) == ["h1", "h2", "h3"]
    for name, row in listed.items():
        assert (row["health"], row["location"]) == ("online", "e2e")
        assert row["underlay"] == cloud.host(name).address


def test_hosts_and_the_plane_reach_each_other_over_the_underlay(cloud: Cloud) -> None:
    h1, h2, h3 = (cloud.host(name) for name in ("h1", "h2", "h3"))
    assert cloud.ping(h1, h2.address)
    assert cloud.ping(None, h3.address)
    assert cloud.ping(h3, cloud.plane_address)


def test_each_hosts_vm_network_is_routed_to_it_from_the_root_namespace(cloud: Cloud) -> None:
    prefixes = [host.vm_prefix for host in cloud.hosts.values()]
    assert len(set(prefixes)) == 3
    for host in cloud.hosts.values():
        assert host.vm_prefix is not None
        route = namespaces.run("ip", "-6", "-j", "route", "show", host.vm_prefix).stdout
        assert [entry["gateway"] for entry in json.loads(route)] == [host.address]
        forwarding = cloud.exec_in(host, "sysctl", "-n", "net.ipv6.conf.all.forwarding")
        assert forwarding.stdout.strip() == "1"


def test_the_user_and_the_operator_work_in_their_own_projects(cloud: Cloud) -> None:
    assert cloud.cli_json("project", "show")["name"] == cloud.project("user")
    assert cloud.cli_json("project", "show", operator=True)["name"] == cloud.project("operator")
    assert cloud.cli_json("whoami")["is_operator"] is False
    assert cloud.cli_json("whoami", operator=True)["is_operator"] is True


def test_a_killed_agent_comes_back_online_as_the_same_host(cloud: Cloud) -> None:
    host = cloud.host("h2")
    before = _hosts(cloud)["h2"]["id"]
    daemon = _daemon_in(cloud, "h2")
    assert host.agent is not None
    killed = host.agent.pid

    host.kill_agent()
    assert not Process.of("agent", killed)
    assert daemon.alive()
    host.start_agent()
    cloud.wait_online()

    listed = _hosts(cloud)
    assert len(listed) == 3
    assert listed["h2"]["id"] == before
    assert host.agent.pid != killed
    assert daemon.alive()


def test_a_cloud_factory_cloud_is_up_while_the_test_runs(cloud_factory: CloudFactory) -> None:
    made = cloud_factory(1, agent_interval=0.5)
    assert _hosts(made)["h1"]["health"] == "online"
    assert set(made.processes) == {"api", "worker"}
    assert all(popen.poll() is None for popen in made.processes.values())


class Boom(Exception):
    pass


@pytest.mark.parametrize("ending", ["nothing fails", "the body raises", "the body is interrupted"])
def test_nothing_remains_after_the_with_block(ending: str) -> None:
    cloud = Cloud(2)
    raised = {"the body raises": Boom, "the body is interrupted": KeyboardInterrupt}.get(ending)
    expected: contextlib.AbstractContextManager[Any] = (
        pytest.raises(raised) if raised else contextlib.nullcontext()
    )
    with expected, cloud:
        daemons = {_daemon_in(cloud, "h1"), _daemon_in(cloud, "h2")}
        running = _what_runs(cloud)
        assert daemons <= running
        assert {"api", "worker", "agent-h1", "agent-h2"} <= {p.name for p in cloud.recorded}
        if raised is not None:
            raise raised()
    _assert_nothing_remains(Names(cloud.suffix), running)


def test_nothing_remains_when_the_setup_fails() -> None:
    cloud = Cloud(2, online_seconds=0.0)
    with pytest.raises(CloudError, match=r"not online within 0\.0 s"), cloud:
        pass
    # The cloud wrote down what it started and what ran in its namespaces at teardown.
    assert {"api", "worker", "agent-h1", "agent-h2"} <= {p.name for p in cloud.recorded}
    _assert_nothing_remains(Names(cloud.suffix), set(cloud.recorded))


def test_leftovers_of_a_killed_run_are_removed_but_a_live_runs_are_not() -> None:
    live, stale = namespaces.claim(), namespaces.claim()
    try:
        for names in (live, stale):
            namespaces.run("ip", "netns", "add", names.namespace("h1"))
            namespaces.run("ip", "link", "add", names.bridge, "type", "bridge")
        # The stale run's owner was a process that has exited since.
        exited = subprocess.Popen(["sleep", "60"])
        owner = Process.of("owner", exited.pid)
        exited.kill()
        exited.wait()
        assert owner is not None
        (stale.work_dir / "owner").write_text(
            json.dumps({"pid": owner.pid, "started": owner.started})
        )
        started = namespaces.run("ip", "netns", "exec", stale.namespace("h1"), "sh", "-c", DAEMON)
        orphan = Process.of("daemon", int(started.stdout))
        assert orphan is not None

        removed = namespaces.sweep_leftovers()

        assert stale.suffix in removed
        assert live.suffix not in removed
        assert (stale.namespaces(), stale.links()) == ([], [])
        assert not stale.work_dir.exists()
        assert wait_gone([orphan]) == []
        assert (live.namespaces(), live.links()) == ([live.namespace("h1")], [live.bridge])
    finally:
        for names in (live, stale):
            namespaces.remove_network(names)
            shutil.rmtree(names.work_dir, ignore_errors=True)


def test_a_run_killed_with_its_cloud_up_is_swept_by_the_next_one() -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert run.stdout is not None
        names = Names(run.stdout.readline().strip())
        left = set(recorded(names.work_dir))
        left |= {
            process
            for namespace in names.namespaces()
            for pid in namespaces.pids_in(namespace)
            if (process := Process.of(namespace, pid)) is not None
        }
        assert {"api", "worker", "agent-h1"} <= {process.name for process in left}
    finally:
        run.kill()
        run.wait()

    assert names.suffix in namespaces.sweep_leftovers()

    assert wait_gone(left) == []
    _assert_nothing_remains(names, left)
