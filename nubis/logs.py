"""How every long-running nubis process (API, worker, agent) logs."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Alembic announces each plugin it loads; only its migrations are news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # httpx logs every request the agent makes; only failures are news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
