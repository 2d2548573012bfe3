"""`nubis admin`: operator commands that talk to the database directly."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy import select

from nubis.cli.admin_account import audit, user_app
from nubis.cli.admin_host import host_app, location_app
from nubis.cli.admin_image import image_app
from nubis.cli.output import JsonOption, console, emit_json, fail, show, table
from nubis.cli.store import database
from nubis.db.migrate import current_revision, upgrade
from nubis.engine import strand as strands
from nubis.ids import Kind, format_id, parse_id
from nubis.models.engine import Semaphore, Strand, StrandStatus

app = typer.Typer(help="Operator commands (they use the database directly).", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
strand_app = typer.Typer(help="Strands: the engine's durable state machines.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(strand_app, name="strand")
app.add_typer(user_app, name="user")
app.add_typer(location_app, name="location")
app.add_typer(host_app, name="host")
app.add_typer(image_app, name="image")
app.command()(audit)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration the database does not have yet."""
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


def _summary(strand: Strand) -> dict[str, Any]:
    return {
        "id": format_id(Kind.STRAND, strand.id),
        "prog": strand.prog,
        "label": strand.label,
        "status": strand.status,
        "tries": strand.tries,
        "schedule": strand.schedule.isoformat(),
        "leased": strand.lease_owner is not None,
        "parent": format_id(Kind.STRAND, strand.parent_id) if strand.parent_id else None,
        "error": strand.last_error.strip().splitlines()[-1] if strand.last_error else None,
    }


@strand_app.command("list")
def strand_list(
    status: Annotated[StrandStatus | None, typer.Option(help="Only strands in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """List strands, failed ones first, then by when they run next."""
    query = (
        select(Strand)
        .order_by((Strand.status == StrandStatus.FAILED).desc(), Strand.schedule)
        .limit(limit)
    )
    if status is not None:
        query = query.where(Strand.status == status)
    with database() as db, db.reading() as session:
        rows = [_summary(s) for s in session.scalars(query)]
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
    strand_id: Annotated[str, typer.Argument(help="st-… id")], as_json: JsonOption = False
) -> None:
    """Everything about one strand: its stack, semaphores and last error."""
    key = parse_id(Kind.STRAND, strand_id)
    with database() as db, db.reading() as session:
        strand = session.get(Strand, key)
        if strand is None:
            fail(f"no strand {strand_id}")
        semaphores = session.scalars(
            select(Semaphore.name).where(Semaphore.strand_id == key).order_by(Semaphore.id)
        ).all()
        detail = {
            **_summary(strand),
            "lease_until": strand.lease_until.isoformat() if strand.lease_until else None,
            "created_at": strand.created_at.isoformat(),
            "finished_at": strand.finished_at.isoformat() if strand.finished_at else None,
            "semaphores": list(semaphores),
            "stack": strand.stack,
            "exitval": strand.exitval,
            "error": strand.last_error,
        }
    if as_json:
        emit_json(detail)
        return
    show({name: value for name, value in detail.items() if value != []}, as_json=False)


@strand_app.command("retry")
def strand_retry(strand_id: Annotated[str, typer.Argument(help="st-… id")]) -> None:
    """Run a failed strand's label again, with a fresh set of tries."""
    key = parse_id(Kind.STRAND, strand_id)
    with database() as db, db.transaction() as session:
        if strands.retry(session, key):
            console.print(f"{strand_id} will run again now")
            return
        strand = session.get(Strand, key)
    if strand is None:
        fail(f"no strand {strand_id}")
    fail(f"{strand_id} is {strand.status}, not failed; only a failed strand can be retried")
