"""`nubis admin`: operator commands, HTTP clients of `/v1/admin/…` with an operator's
token (the profile's, or NUBIS_API_URL and NUBIS_TOKEN), so they work from any machine
and every change is audited. Two bootstrap commands use the database directly, since
they run before there is an API or anyone to ask it: `db upgrade` and `bootstrap`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nubis.choices import StrandStatus
from nubis.cli.account import ProfileOption
from nubis.cli.admin_account import audit, bootstrap, user_app
from nubis.cli.admin_host import host_app, location_app
from nubis.cli.admin_image import image_app
from nubis.cli.client import client_of, part
from nubis.cli.output import JsonOption, console, emit_json, show, table

app = typer.Typer(
    help="Operator commands (through the API, with an operator's token).", no_args_is_help=True
)
db_app = typer.Typer(help="The database schema (straight in the database).", no_args_is_help=True)
strand_app = typer.Typer(help="Strands: the engine's durable state machines.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(strand_app, name="strand")
app.add_typer(user_app, name="user")
app.add_typer(location_app, name="location")
app.add_typer(host_app, name="host")
app.add_typer(image_app, name="image")
app.command()(audit)
app.command()(bootstrap)

STRANDS = "/v1/admin/strands"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration the database does not have yet (NUBIS_DATABASE_URL, else
    the data dir's)."""
    # Only this command and `bootstrap` load the server side.
    from nubis.cli.store import database  # noqa: PLC0415
    from nubis.db.migrate import current_revision, upgrade  # noqa: PLC0415

    with database() as db:
        before = current_revision(db)
        upgrade(db)
        after = current_revision(db)
    if before == after:
        console.print(f"the schema is current ({after})")
    else:
        console.print(f"upgraded the schema from {before or 'nothing'} to {after}")


def _short_prog(name: str) -> str:
    return name.removeprefix("nubis.progs.")


def _summary(strand: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "prog", "label", "status", "tries", "schedule", "leased", "parent", "error")
    return {name: strand[name] for name in keep}


@strand_app.command("list")
def strand_list(
    status: Annotated[StrandStatus | None, typer.Option(help="Only strands in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """List strands, failed ones first, then by when they run next."""
    client = client_of(profile)
    # Failed ones first: they are the ones an operator looks for, however old.
    order = [status] if status is not None else list(StrandStatus)
    order.sort(key=lambda s: s != StrandStatus.FAILED)
    rows: list[dict[str, Any]] = []
    for each in order:
        if len(rows) < limit:
            found = client.first(STRANDS, limit - len(rows), status=each.value)
            rows += sorted((_summary(s) for s in found), key=lambda s: str(s["schedule"]))
    if as_json:
        emit_json(rows)
        return
    table(
        ["id", "prog", "label", "status", "tries", "next run", "error"],
        [
            [
                r["id"],
                _short_prog(r["prog"]),
                r["label"],
                r["status"],
                r["tries"],
                r["schedule"],
                r["error"],
            ]
            for r in rows
        ],
    )


@strand_app.command("show")
def strand_show(
    strand_id: Annotated[str, typer.Argument(help="st-… id")],
    as_json: JsonOption = False,
    profile: ProfileOption = None,
) -> None:
    """Everything about one strand: its stack, semaphores and last error."""
    found = client_of(profile).get(f"{STRANDS}/{part(strand_id)}")
    found["error"] = found.pop("last_error")
    if as_json:
        emit_json(found)
        return
    show({name: value for name, value in found.items() if value != []}, as_json=False)


@strand_app.command("retry")
def strand_retry(
    strand_id: Annotated[str, typer.Argument(help="st-… id")], profile: ProfileOption = None
) -> None:
    """Run a failed strand's label again, with a fresh set of tries."""
    revived = client_of(profile).post(f"{STRANDS}/{part(strand_id)}/retry")
    console.print(f"{revived['id']} will run again now")
