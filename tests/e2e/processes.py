"""The processes of an e2e cloud: started with their logs, stopped, and named by pid
and start time, so that a process is never mistaken for a later one with its pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMMAND_SECONDS = 120.0
STOP_SECONDS = 10.0
LOG_TAIL_LINES = 40


class CloudError(Exception):
    """The cloud could not be made, or did something a test did not expect."""


def nubis_command() -> list[str]:
    """The installed `nubis` console script, else the package run as a module."""
    script = Path(sys.executable).with_name("nubis")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nubis"]


def base_environment() -> dict[str, str]:
    """The inherited environment without NUBIS_ settings, and without proxies: the
    cloud's traffic stays on this machine."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("NUBIS_")
        and name not in ("FORCE_COLOR", "TTY_COMPATIBLE")
        and "proxy" not in name.lower()
    }
    environment.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return environment


def tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
    except OSError:
        return "(no log)"


def daemon(
    argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path, *, session: bool = False
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=session,
        )  # fmt: skip


def begin(argv: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def end(
    popen: subprocess.Popen[str], stdin: str | None = None, timeout: float = COMMAND_SECONDS
) -> subprocess.CompletedProcess[str]:
    try:
        stdout, stderr = popen.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.communicate()
        raise CloudError(f"`{shown(popen.args)}` took over {timeout} s") from None
    return subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)


def shown(args: Any) -> str:
    return " ".join(str(arg) for arg in args) if isinstance(args, list) else str(args)


def checked(done: subprocess.CompletedProcess[str]) -> str:
    if done.returncode != 0:
        raise CloudError(f"`{shown(done.args)}` failed: {done.stderr.strip()}")
    return done.stdout


def stop(popen: subprocess.Popen[bytes], *, group: bool) -> None:
    """SIGTERM, then SIGKILL; to the whole process group if `group`, which may outlive
    its leader (a helper the agent was running)."""

    def send(signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(popen.pid, signum)
            elif popen.poll() is None:
                popen.send_signal(signum)

    if popen.poll() is None:
        send(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(STOP_SECONDS)
    send(signal.SIGKILL)
    popen.wait(STOP_SECONDS)


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot); None if it is gone or a zombie.

    A pid with its start time names one process for good, even once the pid is reused.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def command_line(pid: int) -> list[str] | None:
    """The arguments process `pid` runs with; None if it is gone (or a zombie, whose
    command line is empty)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return [os.fsdecode(arg) for arg in raw.split(b"\0")[:-1]] or None


@dataclass(frozen=True)
class Process:
    """One process, named by what it is to the cloud; two are the same if their pid and
    start time are."""

    name: str = field(compare=False)
    pid: int
    started: int

    @classmethod
    def of(cls, name: str, pid: int) -> Process | None:
        started = start_time(pid)
        return None if started is None else cls(name, pid, started)

    def alive(self) -> bool:
        return start_time(self.pid) == self.started

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def wait_gone(processes: Iterable[Process], timeout: float = 10.0) -> list[Process]:
    """The ones still alive after `timeout` (a killed daemon is reaped by init, later)."""
    deadline = time.monotonic() + timeout
    left = [process for process in processes if process.alive()]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [process for process in left if process.alive()]
    return left
