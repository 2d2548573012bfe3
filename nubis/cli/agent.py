"""`nubis agent`: the host agent of this machine."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path
from typing import Annotated

import typer

from nubis.agent import hardware
from nubis.agent.runner import Agent
from nubis.cli.profile import DEFAULT_API_URL
from nubis.logs import configure_logging
from nubis.protocol import HostReport

DEFAULT_STATE_DIR = Path("/var/lib/nubis/agent")


def agent(
    api_url: Annotated[str, typer.Option(help="The control plane.")] = DEFAULT_API_URL,
    join_token: Annotated[
        str | None, typer.Option(help="From `nubis admin host join-token` (first start only).")
    ] = None,
    state_dir: Annotated[
        Path, typer.Option(help="Where the agent keeps its credential and disks.")
    ] = DEFAULT_STATE_DIR,
    name: Annotated[str | None, typer.Option(help="The host's name (default: hostname).")] = None,
    underlay: Annotated[
        str | None,
        typer.Option(help="The underlay address (default: the one that reaches the API)."),
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.2, help="Longest time between passes (and status reports).")
    ] = 2.0,
) -> None:
    """Join this host to the cloud, and run what the control plane says it should."""
    configure_logging("INFO")

    def describe() -> HostReport:
        return hardware.report(name or socket.gethostname(), api_url, state_dir, underlay)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    Agent(api_url, state_dir, describe, join_token=join_token, interval=interval).run(stop)
