"""How the CLI talks to people (Rich tables) and to scripts (--json)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

# soft_wrap: lines longer than the terminal (or than 80 columns when not a terminal)
# stay whole, so addresses and paths can be copied.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def fail(detail: str, code: int = 1) -> NoReturn:
    """Print the reason on stderr and exit non-zero."""
    errors.print(f"[bold red]error:[/] {detail}", highlight=False)
    sys.exit(code)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    view = Table(*columns, title=title, show_lines=False, header_style="bold")
    for row in rows:
        view.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(view)
