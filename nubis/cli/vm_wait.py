"""Waiting on a VM (`--wait`): polling its state with a spinner until it is what was
asked, has failed, or the time is up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.text import Text

from nubis.cli.client import Client
from nubis.cli.output import errors, fail
from nubis.errors import NotFound

POLL_SECONDS = 0.5
REBOOT_GRACE_SECONDS = 10.0
TIMED_OUT = 124
"""The exit code of a --wait that ran out of time, as timeout(1) has it."""
GONE = "gone"
"""The goal of waiting on a delete: the VM no longer exists."""
REBOOTED = "rebooted"


@contextmanager
def _spinner(text: str) -> Iterator[Any]:
    """A status line with a spinner on stderr, where there is a terminal to show it."""
    if not errors.is_terminal:
        yield None
        return
    with errors.status(text) as status:
        yield status


def _reached(goal: str, vm: dict[str, Any], seen: set[str], waited: float, reboots: int) -> bool:
    state: str = vm["state"]
    if goal != REBOOTED:
        return state == goal
    # A reboot shows `rebooting` only once the VM's prog took the request in, so right
    # after asking the VM may still say `running` from before. It is rebooted once it
    # runs and its host has carried out more reboots than when it was asked, or has been
    # seen rebooting; or, if it was recreated elsewhere meanwhile (its count starts
    # again), once it runs after a grace period.
    return state == "running" and (
        vm["reboots"] > reboots or "rebooting" in seen or waited >= REBOOT_GRACE_SECONDS
    )


def wait(
    client: Client, path: str, name: str, goal: str, timeout: float, *, reboots: int = 0
) -> dict[str, Any]:
    """Poll the VM at `path` until it is `goal`; the VM as last seen ({} once gone).
    `reboots`: the VM's count when its reboot was asked (for the goal REBOOTED).
    A VM that fails ends the command (exit 1), as does running out of time (exit 124)."""
    started = time.monotonic()
    seen: set[str] = set()
    vm: dict[str, Any] = {}
    state = "unknown"
    with _spinner(f"Waiting for VM {name}") as status:
        while True:
            waited = time.monotonic() - started
            try:
                vm = client.get(path)
            except NotFound:
                if goal == GONE:
                    return {}
                raise NotFound(f"VM {name} was deleted while waiting for it") from None
            state = vm["state"]
            seen.add(state)
            if _reached(goal, vm, seen, waited, reboots):
                return vm
            if state == "failed":
                break
            if waited >= timeout:
                break
            if status is not None:
                status.update(Text(f"Waiting for VM {name} to be {goal}: {state} ({waited:.0f} s)"))
            time.sleep(POLL_SECONDS)
    if state == "failed":
        fail(f"VM {name} failed: {vm['detail'] or 'no reason given'}")
    fail(f"VM {name} is still {state}, not {goal}, after {timeout:g} s", TIMED_OUT)
