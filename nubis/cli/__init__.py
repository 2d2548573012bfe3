"""The `nubis` command: services (up, api, worker), the user CLI and `nubis admin`."""

from __future__ import annotations

import sys

import typer

from nubis.cli import admin, services
from nubis.cli.output import fail
from nubis.errors import NubisError

app = typer.Typer(
    help="nubis: an IPv6-first, API-first cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
services.register(app)
app.add_typer(admin.app, name="admin")


def main() -> None:
    try:
        app()
    except NubisError as error:
        fail(error.detail)
    except KeyboardInterrupt:
        sys.exit(130)
