"""How the CLI talks to people (Rich tables) and to scripts (--json)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

# soft_wrap: lines longer than the terminal stay whole, so addresses and paths can be
# copied. Piped output has no width to fit, so tables are not cut to 80 columns there.
# No markup and no emoji: what is printed is often the API's text or a user's (a key
# comment, a name given on the command line) or a MAC address, whose ":cd:" Rich would
# otherwise turn into a picture of a disc; it must come out as it is.
console = Console(
    soft_wrap=True,
    width=None if sys.stdout.isatty() else 1000,
    markup=False,
    emoji=False,
    highlight=False,
)
errors = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(detail: str, code: int = 1) -> NoReturn:
    """Print the reason on stderr and exit non-zero."""
    errors.print(Text.assemble(("error:", "bold red"), " ", detail))
    sys.exit(code)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    view = Table(*columns, title=title, show_lines=False, header_style="bold")
    for row in rows:
        view.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console.print(view)


def show(item: dict[str, Any], as_json: bool) -> None:
    """One object: JSON, or a `field  value` line per field that has a value."""
    if as_json:
        emit_json(item)
        return
    width = max((len(name) for name in item), default=0)
    for name, value in item.items():
        if value is not None:
            console.print(Text.assemble((f"{name:{width}}", "bold"), "  ", str(value)))


def listing(items: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """Objects: JSON, or a table of the given fields."""
    if as_json:
        emit_json(list(items))
        return
    table(columns, [[item.get(column) for column in columns] for item in items])
