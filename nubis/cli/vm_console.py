"""`nubis vm console` and `nubis vm log`: the VM's serial console, as its host last
reported it (read-only)."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from nubis.cli.account import ProfileOption
from nubis.cli.client import part, project_of, signed_in
from nubis.cli.project import ProjectOption

FOLLOW_SECONDS = 1.0


def unseen(before: str, after: str) -> str:
    """What of the console tail `after` came since the tail `before`.

    The tail is a window that slides as the console grows, so the new part starts
    where the longest end of `before` that begins `after` stops. With no overlap, all
    of `after` is new (more was written than the window holds, or the log restarted).
    """
    if not before:
        return after
    # The KMP prefix function of after + a separator + before: its last value is the
    # longest prefix of `after` that ends `before`, found in linear time.
    joined: list[str | None] = [*after, None, *before]
    prefix = [0] * len(joined)
    for i in range(1, len(joined)):
        k = prefix[i - 1]
        while k and joined[i] != joined[k]:
            k = prefix[k - 1]
        if joined[i] == joined[k]:
            k += 1
        prefix[i] = k
    return after[prefix[-1] :]


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _console(name: str, follow: bool, project: str | None, profile: str | None) -> None:
    client, chosen = signed_in(profile)
    path = f"/v1/projects/{part(project_of(chosen, project))}/vms/{part(name)}/console"
    shown = client.text(path)
    if not follow:
        _write(shown if not shown or shown.endswith("\n") else f"{shown}\n")
        return
    _write(shown)
    while True:
        time.sleep(FOLLOW_SECONDS)
        latest = client.text(path)
        _write(unseen(shown, latest))
        shown = latest


def vm_console(
    name: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing what comes, until Ctrl-C.")
    ] = False,
    project: ProjectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Print the VM's serial console (read-only); --follow keeps printing what comes.

    It is the last 16 KiB its host reported. Nothing typed reaches the VM: for a shell,
    use `nubis vm ssh`. --follow prints only what is new, until Ctrl-C."""
    _console(name, follow, project, profile)


def vm_log(name: str, project: ProjectOption = None, profile: ProfileOption = None) -> None:
    """Print the VM's serial console log once: the last 16 KiB its host reported."""
    _console(name, False, project, profile)
