"""A whole nubis cloud on this machine, for end-to-end tests: the control plane in the
root namespace, each host a network namespace running a real `nubis agent`.

    with Cloud(3) as cloud:
        cloud.cli_json("project", "show")
        cloud.host("h1").kill_agent()

Failures to inflict: `Host.kill_agent` (a crash), `Host.power_off` (the agent and all
that runs on the host), `Host.cut` / `Host.reconnect` (off the underlay and back),
`Cloud.stop_plane` / `Cloud.start_plane` (the API and the worker).

The control plane (`nubis api` and one `nubis worker`, SQLite in its data dir) listens
on the underlay bridge; each host reaches it through its veth. Leaving the `with` block
removes everything the cloud made, whether the block ended well or not, and so does a
start that fails half-way. `tests/e2e/namespaces.py` names what it makes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from nubis.db import Database
from nubis.hosts import find
from nubis.ipam import host_subnets
from tests.e2e import namespaces
from tests.e2e.namespaces import UNDERLAY_LINK, Names, Underlay
from tests.e2e.processes import (
    COMMAND_SECONDS,
    LOG_TAIL_LINES,
    REPO,
    STOP_SECONDS,
    CloudError,
    Process,
    base_environment,
    begin,
    checked,
    command_line,
    daemon,
    end,
    nubis_command,
    stop,
    tail,
    wait_gone,
)

__all__ = ["Cloud", "CloudError", "Host"]

LOCATION = "e2e"
PEOPLE = ("operator", "user")
API_START_SECONDS = 60.0
NETNS_DIR = Path("/run/netns")
QEMU_COMMAND = "qemu-system"
"""How a QEMU process's name begins (`/proc/PID/comm`)."""
GUEST = "guest="


def guest_of(argv: list[str] | None) -> str | None:
    """The VM id a QEMU command line runs (its `-name guest=ID`); None for another
    process."""
    for option, value in pairwise(argv or []):
        if option == "-name" and value.startswith(GUEST):
            return value.removeprefix(GUEST).split(",")[0]
    return None


@dataclass
class Host:
    """One host of the cloud: a namespace with an agent in it."""

    cloud: Cloud
    name: str
    number: int
    namespace: str
    state_dir: Path
    address: str
    """Its underlay address (on `ul0`)."""
    agent: subprocess.Popen[bytes] | None = None
    vm_prefix: str | None = None
    """The /64 the control plane gave the host for its VMs, once it is online."""

    @property
    def log(self) -> Path:
        return self.state_dir / "agent.log"

    def start_agent(self, join_token: str | None = None) -> None:
        """Start the agent; without a join token it uses the credential in its state dir."""
        if self.agent is not None and self.agent.poll() is None:
            raise CloudError(f"the agent of {self.name} runs already")
        argv = [
            "ip", "netns", "exec", self.namespace, *nubis_command(), "agent",
            "--api-url", self.cloud.api_url, "--state-dir", str(self.state_dir),
            "--name", self.name, "--underlay", self.address,
            "--interval", str(self.cloud.agent_interval),
        ]  # fmt: skip
        if join_token is not None:
            argv += ["--join-token", join_token]
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A session of its own: a stop or a kill reaches the agent and its helpers, never
        # the daemons it starts (QEMU, radvd), which make sessions of their own.
        environment = {**base_environment(), **self.cloud.settings}
        self.agent = daemon(argv, environment, self.state_dir, self.log, session=True)
        self.cloud.remember(f"agent-{self.name}", self.agent.pid)

    def kill_agent(self) -> None:
        """SIGKILL the agent, as a crash would, leaving what it daemonized running."""
        if self.agent is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.agent.pid, signal.SIGKILL)
            self.agent.wait(STOP_SECONDS)

    def stop_agent(self) -> None:
        """Stop the agent as an operator would (SIGTERM), SIGKILL if it lingers."""
        if self.agent is not None:
            stop(self.agent, group=True)

    def power_off(self) -> None:
        """Cut the host's power: SIGKILL its agent and every process in its namespace
        (its VMs' QEMU, radvd) at once, with no warning to any of them. Its links and
        state dir stay, as a powered-off machine's disks and cables do."""
        doomed = self.pids()
        if self.agent is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.agent.pid, signal.SIGKILL)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        namespaces.kill_everything_in(self.namespace)
        if self.agent is not None:
            self.agent.wait(STOP_SECONDS)

    def cut(self) -> None:
        """Cut the host off the underlay, as a pulled cable: its underlay link goes down
        inside its namespace, so it reaches neither the control plane nor its peers, and
        they do not reach it. Everything on the host runs on. Its address stays on the
        link (an IPv6 address is otherwise flushed when its link goes down)."""
        keep = f"net.ipv6.conf.{UNDERLAY_LINK}.keep_addr_on_down=1"
        namespaces.run("ip", "netns", "exec", self.namespace, "sysctl", "-q", "-w", keep)
        namespaces.run("ip", "-n", self.namespace, "link", "set", UNDERLAY_LINK, "down")

    def reconnect(self) -> None:
        """Put a cut host back on the underlay, with its address."""
        namespaces.run("ip", "-n", self.namespace, "link", "set", UNDERLAY_LINK, "up")
        namespaces.run("ip", "-n", self.namespace, "addr", "replace", f"{self.address}/64",
                       "dev", UNDERLAY_LINK, "nodad")  # fmt: skip

    def pids(self) -> list[int]:
        """Every process in the host's namespace."""
        return namespaces.pids_in(self.namespace)

    def qemu_pids(self, vm_id: str) -> list[int]:
        """The QEMU processes in the host's namespace that run VM `vm_id`."""
        return [pid for pid in self.pids() if guest_of(command_line(pid)) == vm_id]

    def links(self) -> list[str]:
        """The names of the links in the host's namespace."""
        listed = namespaces.run("ip", "-n", self.namespace, "-o", "link", "show").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in listed.splitlines()]


class Cloud:
    """A cloud of `hosts` namespaces (h1, h2, ...) and a control plane; it starts on
    entering the `with` block and is removed on leaving it.

    `settings` are NUBIS_* variables for every process of the cloud (the control plane
    and the agents), e.g. {"NUBIS_HOST_DEAD_SECONDS": "20"}.
    """

    def __init__(
        self,
        hosts: int,
        *,
        settings: dict[str, str] | None = None,
        agent_interval: float = 1.0,
        online_seconds: float = 90.0,
    ) -> None:
        if hosts < 1:
            raise ValueError("a cloud needs a host")
        self.size = hosts
        self.settings = dict(settings or {})
        self.agent_interval = agent_interval
        self.online_seconds = online_seconds
        self.names: Names | None = None
        self.closed = False
        self.underlay: Underlay | None = None
        self.api_url = ""
        self.hosts: dict[str, Host] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        """The control plane's processes: "api" and "worker"."""
        self.recorded: list[Process] = []
        """Every process the cloud started, and what ran in its namespaces at teardown."""
        self._password = secrets.token_urlsafe(16)
        """Of both people; made for this cloud, it dies with it."""

    @property
    def password(self) -> str:
        """The password of both people (user@example.com and operator@example.com)."""
        return self._password

    def __enter__(self) -> Cloud:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(show_logs=error is not None)

    @property
    def suffix(self) -> str:
        return self._names.suffix

    @property
    def work_dir(self) -> Path:
        """`/tmp/nbe-<suffix>`: everything of the cloud on disk."""
        return self._names.work_dir

    @property
    def data_dir(self) -> Path:
        """The control plane's data dir (NUBIS_DATA_DIR)."""
        return self.work_dir / "plane"

    @property
    def plane_address(self) -> str:
        """The control plane's underlay address, on the bridge: the API listens there."""
        return self._underlay.plane_address

    @property
    def _names(self) -> Names:
        if self.names is None:
            raise CloudError("the cloud is not running")
        return self.names

    @property
    def _underlay(self) -> Underlay:
        if self.underlay is None:
            raise CloudError("the cloud is not running")
        return self.underlay

    # -- start -------------------------------------------------------------------------

    def start(self) -> None:
        """Make the underlay, the control plane and the hosts; wait until all are online.
        What was made is removed again if any of it fails."""
        namespaces.sweep_leftovers()
        self.names = namespaces.claim()
        try:
            self._start()
        except BaseException:
            self.close(show_logs=True)
            raise

    def _start(self) -> None:
        underlay = self.underlay = Underlay(self._names, namespaces.ula_prefix(64))
        self.data_dir.mkdir(mode=0o700)
        underlay.make_bridge()
        for number in range(1, self.size + 1):
            name = f"h{number}"
            underlay.add_host(name, number)
            self.hosts[name] = Host(
                self, name, number, self._names.namespace(name), self.work_dir / name,
                underlay.address(number),
            )  # fmt: skip
        port = namespaces.free_port(underlay.plane_address)
        self.api_url = f"http://[{underlay.plane_address}]:{port}"
        # The two bootstrap commands use the database; every other `nubis admin` goes
        # through the API with the operator's token.
        checked(self._plane_admin("db", "upgrade"))
        checked(self._plane_admin(
            "bootstrap", "operator", "--email", "operator@example.com", "--password-stdin",
            stdin=self._password + "\n",
        ))  # fmt: skip
        self.start_api()
        self.start_worker()
        self._wait_healthy()
        checked(self._login("operator"))
        prefix = str(namespaces.ula_prefix(48))
        self._admin_together(
            [["location", "create", LOCATION, "--prefix", prefix],
             ["user", "create", "user", "--email", "user@example.com", "--password-stdin"]],
            stdin=self._password + "\n",
        )  # fmt: skip
        tokens = self._admin_together([["host", "join-token", "--location", LOCATION]] * self.size)
        for host, token in zip(self.hosts.values(), tokens, strict=True):
            host.start_agent(token.strip())
        checked(self._login("user"))
        self._cli_together(lambda who: ["project", "create", self.project(who)])
        self._cli_together(lambda who: ["project", "use", self.project(who)])
        self.wait_online()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + API_START_SECONDS
        api = self.processes["api"]
        while time.monotonic() < deadline:
            if api.poll() is not None:
                raise CloudError(f"nubis api exited with {api.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.api_url}/v1/health", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise CloudError(f"{self.api_url} did not answer within {API_START_SECONDS} s")

    def wait_online(self, timeout: float | None = None) -> None:
        """Wait until every host is listed online, then route each host's VM /64 to it."""
        limit = self.online_seconds if timeout is None else timeout
        deadline = time.monotonic() + limit
        listed: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for host in self.hosts.values():
                if host.agent is not None and host.agent.poll() is not None:
                    raise CloudError(
                        f"the agent of {host.name} exited with {host.agent.returncode}:\n"
                        f"{tail(host.log)}"
                    )
            listed = {row["name"]: row for row in self.admin_json("host", "list")}
            if all(listed.get(name, {}).get("health") == "online" for name in self.hosts):
                self._route_vm_networks()
                return
            time.sleep(0.5)
        health = {name: listed.get(name, {}).get("health", "not joined") for name in self.hosts}
        raise CloudError(f"hosts not online within {limit} s: {health}")

    def _route_vm_networks(self) -> None:
        database = Database.connect(self.plane_environment()["NUBIS_DATABASE_URL"])
        try:
            with database.reading() as session:
                for host in self.hosts.values():
                    host.vm_prefix = host_subnets.of(session, find(session, host.name))
        finally:
            database.dispose()
        for host in self.hosts.values():
            assert host.vm_prefix is not None
            self._underlay.route(host.vm_prefix, host.number)

    # -- the control plane's processes ---------------------------------------------------

    def start_api(self) -> subprocess.Popen[bytes]:
        """Start `nubis api` on the cloud's address and port; its output goes to
        `api.log`. It answers once `wait_healthy` returns."""
        running = self.processes.get("api")
        if running is not None and running.poll() is None:
            raise CloudError("the API runs already: stop it first")
        log = self.data_dir / "api.log"
        api = daemon([*nubis_command(), "api"], self.plane_environment(), self.data_dir, log)
        self.processes["api"] = api
        self.remember("api", api.pid)
        return api

    def stop_plane(self) -> None:
        """Stop the whole control plane, the API and the worker, as an operator would
        (SIGTERM, SIGKILL if one lingers); the hosts' agents and their VMs run on."""
        running = [popen for popen in self.processes.values() if popen.poll() is None]
        for popen in running:  # both at once, then wait for each
            popen.terminate()
        for popen in running:
            stop(popen, group=False)

    def start_plane(self) -> None:
        """Start the control plane again on the same address and port: the API, and
        once it answers, the worker."""
        self.start_api()
        self._wait_healthy()
        self.start_worker()

    # -- the worker --------------------------------------------------------------------

    def start_worker(self, argv: Sequence[str] | None = None) -> subprocess.Popen[bytes]:
        """Start the control plane's worker: `nubis worker`, or `argv` in its place (e.g.
        `[sys.executable, "-m", "tests.e2e.worker_faults", LABEL, MARKER]`), with the
        plane's environment; its output goes to `worker.log` too."""
        running = self.processes.get("worker")
        if running is not None and running.poll() is None:
            raise CloudError("a worker runs already: stop it first")
        command = list(argv) if argv is not None else [*nubis_command(), "worker"]
        log = self.data_dir / "worker.log"
        worker = daemon(command, self.plane_environment(), self.data_dir, log)
        self.processes["worker"] = worker
        self.remember("worker", worker.pid)
        return worker

    def stop_worker(self) -> None:
        """Stop the worker as an operator would (SIGTERM: it finishes the labels it runs
        and gives back its strands), SIGKILL if it lingers."""
        worker = self.processes.get("worker")
        if worker is not None:
            stop(worker, group=False)

    def remember(self, name: str, pid: int) -> None:
        """Write a started process down, so that even a killed run's next run finds it."""
        process = Process.of(name, pid)
        if process is not None:
            self.recorded.append(process)
            namespaces.record(self.work_dir, process)

    # -- teardown ----------------------------------------------------------------------

    def close(self, *, show_logs: bool = False) -> None:
        """Remove everything the cloud made. Every step is tried even if one before it
        failed or was interrupted; the first failure is raised at the end."""
        if self.names is None or self.closed:
            return
        self.closed = True
        names = self.names
        steps: list[Callable[[], object]] = [
            self._snapshot_namespaces,
            self._stop_agents,
            lambda: self._kill_everything_in_namespaces(names),
            self._stop_plane,
            *([self.print_logs] if show_logs else []),
            lambda: namespaces.remove_network(names),
            self._wait_processes_gone,
            lambda: shutil.rmtree(names.work_dir),
            lambda: self._check_removed(names),
        ]
        failure: BaseException | None = None
        for step in steps:
            try:
                step()
            # A KeyboardInterrupt too: the rest of the teardown still has to run.
            except BaseException as error:
                failure = failure or error
        if failure is not None:
            raise failure

    def _snapshot_namespaces(self) -> None:
        for namespace in self._names.namespaces():
            for pid in namespaces.pids_in(namespace):
                process = Process.of(namespace, pid)
                if process is not None and process not in self.recorded:
                    self.recorded.append(process)

    def _kill_everything_in_namespaces(self, names: Names) -> None:
        """What the agents daemonized (QEMU, radvd) dies here."""
        for namespace in names.namespaces():
            namespaces.kill_everything_in(namespace)

    def _stop_agents(self) -> None:
        agents = [host.agent for host in self.hosts.values() if host.agent is not None]
        for agent in agents:  # all at once, then wait for each
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.pid, signal.SIGTERM)
        for agent in agents:
            stop(agent, group=True)

    def _stop_plane(self) -> None:
        for popen in self.processes.values():
            if popen.poll() is None:
                popen.terminate()
        for popen in self.processes.values():
            stop(popen, group=False)

    def _wait_processes_gone(self) -> None:
        left = wait_gone(self.recorded)
        for process in left:
            process.kill()
        if wait_gone(left):
            raise CloudError(f"processes outlived the cloud: {left}")

    def _check_removed(self, names: Names) -> None:
        left = [*names.namespaces(), *names.links()]
        if left or names.work_dir.exists():
            raise CloudError(f"cloud {names.suffix} left {left} {names.work_dir}")

    def print_logs(self) -> None:
        """The tails of the control plane's and the agents' logs, on stderr."""
        logs = [self.data_dir / f"{name}.log" for name in self.processes]
        for log in [*logs, *(host.log for host in self.hosts.values())]:
            print(f"--- {log} (last {LOG_TAIL_LINES} lines)\n{tail(log)}", file=sys.stderr)

    # -- commands ----------------------------------------------------------------------

    def plane_environment(self) -> dict[str, str]:
        """The environment of the control plane: its processes and the bootstrap
        commands of `nubis admin`."""
        environment = base_environment()
        environment.update(
            NUBIS_DATA_DIR=str(self.data_dir),
            NUBIS_DATABASE_URL=f"sqlite:///{self.data_dir / 'nubis.db'}",
            NUBIS_API_HOST=self._underlay.plane_address,
            NUBIS_API_PORT=self.api_url.rsplit(":", 1)[1],
        )
        environment.update(self.settings)
        return environment

    @staticmethod
    def project(who: str = "user") -> str:
        """The project of the user (or the operator) that their CLI works in."""
        return f"{who}-e2e"

    def config_dir(self, who: str = "user") -> Path:
        """Where the user's (or the operator's) CLI keeps its profiles and known_hosts."""
        return self._home(who) / "config" / "nubis"

    def _home(self, who: str) -> Path:
        home = self.work_dir / who
        home.mkdir(mode=0o700, exist_ok=True)
        return home

    def _cli_environment(self, who: str) -> dict[str, str]:
        home = self._home(who)
        return {**base_environment(), "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config")}

    def cli(
        self, *args: str, operator: bool = False, stdin: str | None = None,
        timeout: float = COMMAND_SECONDS,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """`nubis ARGS` at the user's (or the operator's) terminal, in their project."""
        who = "operator" if operator else "user"
        command = [*nubis_command(), *args]
        return end(begin(command, self._cli_environment(who), self._home(who)), stdin, timeout)

    def cli_json(self, *args: str, operator: bool = False) -> Any:
        """What `nubis ARGS --json` printed; CloudError if it failed."""
        return json.loads(checked(self.cli(*args, "--json", operator=operator)))

    def admin(
        self, *args: str, stdin: str | None = None, timeout: float = COMMAND_SECONDS
    ) -> subprocess.CompletedProcess[str]:
        """`nubis admin ARGS` at the operator's terminal: through the API, with the
        operator's token."""
        command = [*nubis_command(), "admin", *args]
        home = self._home("operator")
        return end(begin(command, self._cli_environment("operator"), home), stdin, timeout)

    def _plane_admin(
        self, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`nubis admin ARGS` on the control plane, with its database: the bootstrap
        commands (`db upgrade`, `bootstrap`)."""
        command = [*nubis_command(), "admin", *args]
        return end(begin(command, self.plane_environment(), self.data_dir), stdin)

    def _login(self, who: str) -> subprocess.CompletedProcess[str]:
        email = f"{who}@example.com"
        login = ["login", "--email", email, "--password-stdin", "--api-url", self.api_url]
        return self.cli(*login, operator=who == "operator", stdin=self._password + "\n")

    def admin_json(self, *args: str) -> Any:
        """What `nubis admin ARGS --json` printed; CloudError if it failed."""
        return json.loads(checked(self.admin(*args, "--json")))

    def _admin_together(self, commands: list[list[str]], stdin: str | None = None) -> list[str]:
        """Admin commands run at once (each costs a Python start-up), each given `stdin`;
        their outputs."""
        environment, home = self._cli_environment("operator"), self._home("operator")
        started = [
            begin([*nubis_command(), "admin", *argv], environment, home) for argv in commands
        ]
        return [checked(end(popen, stdin)) for popen in started]

    def _cli_together(self, command: Callable[[str], list[str]]) -> None:
        started = [
            begin([*nubis_command(), *command(who)], self._cli_environment(who), self._home(who))
            for who in PEOPLE
        ]
        for popen in started:
            checked(end(popen, self._password + "\n"))

    def qemu_processes(self) -> dict[str, list[tuple[str, int]]]:
        """Every QEMU that runs a VM on one of the cloud's hosts, by VM id: the host's
        name and the pid of each. One pass over /proc (a process's network namespace
        says its host), cheap enough to repeat every fraction of a second.

        A QEMU that daemonizes forks twice, and the first process waits, with the same
        command line, until the last one has started the VM; it runs no VM and is not
        counted. It is the one still in its agent's session: the VM's QEMU is in a
        session of its own."""
        hosts: dict[tuple[int, int], str] = {}
        for host in self.hosts.values():
            with contextlib.suppress(OSError):
                found = os.stat(NETNS_DIR / host.namespace)
                hosts[found.st_dev, found.st_ino] = host.name
        agents = {host.agent.pid for host in self.hosts.values() if host.agent is not None}
        running: dict[str, list[tuple[str, int]]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if not Path(entry.path, "comm").read_text().startswith(QEMU_COMMAND):
                    continue
                network = os.stat(Path(entry.path, "ns", "net"))
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            session = int(stat[stat.rindex(")") + 2 :].split()[3])
            host_name = hosts.get((network.st_dev, network.st_ino))
            vm_id = guest_of(command_line(int(entry.name)))
            if host_name is not None and vm_id is not None and session not in agents:
                running.setdefault(vm_id, []).append((host_name, int(entry.name)))
        return running

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise CloudError(f"no host {name!r}: the cloud has {sorted(self.hosts)}") from None

    def _inside(self, host: str | Host | None) -> list[str]:
        if host is None:
            return []
        found = host if isinstance(host, Host) else self.host(host)
        return ["ip", "netns", "exec", found.namespace]

    def exec_in(
        self, host: str | Host, *argv: str, timeout: float = 60.0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside a host's namespace."""
        argv_inside = [*self._inside(host), *argv]
        return end(begin(argv_inside, base_environment(), REPO), stdin, timeout)

    def ping(self, host: str | Host | None, address: str, *, timeout: float = 5.0) -> bool:
        """Whether `address` answers an ICMPv6 echo from the host (None: from the root
        namespace) within `timeout` seconds."""
        argv = [*self._inside(host), *namespaces.ping_argv(address, timeout)]
        return end(begin(argv, base_environment(), REPO), None, timeout + 30).returncode == 0
