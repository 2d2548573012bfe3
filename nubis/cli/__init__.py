"""The `nubis` command: services (up, api, worker), the user CLI and `nubis admin`.

The user commands are HTTP clients and start fast. The services and `admin` load the
server side (SQLAlchemy, FastAPI, the models) and `agent` the host's (pyroute2, QEMU's
argv), so they are imported only when asked for.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer._click import Command, Context
from typer.core import TyperGroup

from nubis.cli import account, firewall_rule, image, network, project, ssh_key, token, vm
from nubis.cli.output import fail
from nubis.errors import NubisError

_HEAVY = {
    "up": "nubis.cli.services:up",
    "api": "nubis.cli.services:api",
    "worker": "nubis.cli.services:worker",
    "admin": "nubis.cli.admin:app",
    "agent": "nubis.cli.agent:agent",
}
"""Commands whose modules are imported only when the command runs (or help lists it)."""


def _load(name: str) -> Command:
    module, attribute = _HEAVY[name].split(":")
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer()
    single.command(name=name)(target)
    return typer.main.get_command(single)


class _Commands(TyperGroup):
    """Loads the heavy commands on demand, and turns a NubisError from any command into
    its reason on stderr and exit code 1."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*_HEAVY, *super().list_commands(ctx)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in _HEAVY:
            return _load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except NubisError as error:
            fail(error.detail)


app = typer.Typer(
    cls=_Commands,
    help="nubis: an IPv6-first, API-first cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
account.register(app)
project.register(app)
token.register(app)
ssh_key.register(app)
vm.register(app)
network.register(app)
firewall_rule.register(app)
image.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
