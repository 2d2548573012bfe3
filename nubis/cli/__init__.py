"""The `nubis` command: services (up, api, worker), the user CLI and `nubis admin`."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from nubis.cli import account, admin, project, services, ssh_key, token
from nubis.cli.output import fail
from nubis.errors import NubisError


class _Commands(TyperGroup):
    """Turns a NubisError from any command into its reason on stderr and exit code 1."""

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
services.register(app)
account.register(app)
project.register(app)
token.register(app)
ssh_key.register(app)
app.add_typer(admin.app, name="admin")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
