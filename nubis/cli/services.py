"""The long-running commands: `nubis up`, `nubis api`, `nubis worker`."""

from __future__ import annotations

import ipaddress
import logging
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Annotated

import typer
import uvicorn
from sqlalchemy import select

from nubis import hosts, locations
from nubis.agent import hardware
from nubis.agent.runner import CREDENTIAL_FILE, Agent
from nubis.auth import accounts
from nubis.cli.output import console, fail
from nubis.config import Settings
from nubis.db import Database
from nubis.db.migrate import current_revision, head_revision, upgrade
from nubis.engine.worker import Worker
from nubis.images import public
from nubis.logs import configure_logging
from nubis.models import Flooding, Location, User
from nubis.secretbox import SecretBox
from nubis.web import create_app

FIRST_OPERATOR_EMAIL = "admin@localhost"
STARTED_POLL_SECONDS = 0.05

log = logging.getLogger(__name__)


def _settings(**overrides: object) -> Settings:
    """The settings from the environment, with the options given on the command line."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def _require_current_schema(db: Database) -> None:
    current, head = current_revision(db), head_revision()
    if current != head:
        fail(
            f"the database schema is at {current or 'nothing'}, this nubis needs {head}: "
            "run `nubis admin db upgrade` first"
        )


def up(
    host: Annotated[str | None, typer.Option(help="Address the API listens on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port the API listens on.")] = None,
) -> None:
    """Run the whole control plane on this machine, on SQLite in the data dir."""
    settings = _settings(api_host=host, api_port=port)
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database.connect(settings.database_url, pool_size=settings.worker_threads + 4)
    upgrade(db)
    first_login = _first_operator(db)
    local_agent = _local_agent(db, settings)
    worker = Worker(db, settings, threads=settings.worker_threads)
    worker.start()
    agent_stop = threading.Event()
    agent_thread = threading.Thread(
        target=local_agent.run, args=(agent_stop,), name="agent", daemon=True
    )
    if settings.tiny_image:
        threading.Thread(target=_add_tiny, args=(db, settings), name="tiny", daemon=True).start()
    api_url = settings.api_url
    console.print("nubis is up", style="bold green")
    console.print(
        f"  console    {api_url}/  (the web console)\n"
        f"  API        {api_url}/v1  (health: {api_url}/v1/health)\n"
        f"  data dir   {settings.data_dir}\n"
        f"  database   {db.engine.url.render_as_string(hide_password=True)}\n"
        f"  workers    {settings.worker_threads} threads\n"
        "Press Ctrl-C to stop.",
    )
    if first_login is not None:
        email, password = first_login
        console.print(
            "\nAn operator account was made for you. Log in with\n"
            f"  nubis login --email {email} --api-url {api_url}\n"
            f"and the password {password} (shown only this once), or sign in with them\n"
            f"to the web console at {api_url}/. Then:\n"
            "  nubis project create demo && nubis project use demo\n"
            "  nubis ssh-key add me ~/.ssh/id_ed25519.pub\n"
            "  nubis vm create web1 --image tiny --wait\n"
            "  nubis vm ssh web1\n"
            "(the image `tiny` is built in the background: ready in about a minute)",
        )

    try:
        # The agent registers and long-polls through the API: it starts once that listens.
        _serve(db, settings, then=agent_thread.start, before_exit=agent_stop.set)
    finally:
        agent_stop.set()
        if agent_thread.is_alive():
            agent_thread.join(15)
        worker.stop()
        db.dispose()
        console.print("nubis stopped.")


def api(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Serve the REST API."""
    settings = _settings(api_host=host, api_port=port)
    configure_logging(settings.log_level)
    db = Database.connect(settings.database_url)
    _require_current_schema(db)
    try:
        _serve(db, settings)
    finally:
        db.dispose()


def worker(
    threads: Annotated[
        int | None, typer.Option(min=1, max=256, help="Strands run at once.")
    ] = None,
) -> None:
    """Run the engine: take due strands and run their labels until stopped."""
    settings = Settings()
    configure_logging(settings.log_level)
    count = threads or settings.worker_threads
    db = Database.connect(settings.database_url, pool_size=count + 2)
    _require_current_schema(db)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runner = Worker(db, settings, threads=count)
    runner.start()
    log.info("worker running %d threads on %s", count, db.engine.dialect.name)
    stop.wait()
    log.info("stopping: letting running labels finish")
    runner.stop()
    db.dispose()


def _first_operator(db: Database) -> tuple[str, str] | None:
    """On a store without users, make an operator; its email and password, once."""
    with db.transaction() as session:
        if session.scalar(select(User.id).limit(1)) is not None:
            return None
        password = secrets.token_urlsafe(12)
        user = accounts.create_user(session, "admin", FIRST_OPERATOR_EMAIL, password, operator=True)
        return user.email, password


def _local_agent(db: Database, settings: Settings) -> Agent:
    """The agent of this machine, joined (on the first start) to the location `local`,
    which is made with a random private /48 if there is no location yet."""
    state_dir = settings.data_dir / "agent"
    join_token = None
    if not (state_dir / CREDENTIAL_FILE).exists():
        with db.transaction() as session:
            location = session.scalars(select(Location).order_by(Location.id)).first()
            if location is None:
                location = locations.create(
                    session, "local", _private_prefix(), flooding=Flooding.MULTICAST
                )
            join_token = hosts.issue_join_token(session, location.id, timedelta(hours=1))
    return Agent(
        settings.api_url,
        state_dir,
        lambda: hardware.report(socket.gethostname(), settings.api_url, state_dir),
        join_token=join_token,
    )


def _add_tiny(db: Database, settings: Settings) -> None:
    """Build and add the public image `tiny` if there is none; a failure is only logged:
    the cloud runs without it, and `nubis admin image build-tiny` tries again."""
    try:
        public.ensure_tiny(db, settings)
    except Exception:
        log.exception("could not build the tiny image; try `nubis admin image build-tiny`")


def _private_prefix() -> str:
    """A random unique local /48 (RFC 4193)."""
    global_id = secrets.randbits(40)
    return str(ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), 48)))


def _once_started(server: uvicorn.Server, then: Callable[[], None]) -> None:
    while not server.started and not server.should_exit:
        time.sleep(STARTED_POLL_SECONDS)
    if server.started:
        then()


class _Server(uvicorn.Server):
    """uvicorn's server, calling `before_exit` as soon as the stop signal arrives, while
    the API still answers: what runs through it can stop before it closes."""

    def __init__(self, config: uvicorn.Config, before_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.before_exit = before_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.before_exit()
        super().handle_exit(sig, frame)


def _serve(
    db: Database,
    settings: Settings,
    *,
    then: Callable[[], None] | None = None,
    before_exit: Callable[[], None] = lambda: None,
) -> None:
    """Serve the API until SIGINT or SIGTERM, then return normally; `then` is called
    once it listens, `before_exit` when the stop signal arrives."""
    app = create_app(db, SecretBox.from_file(settings.secret_key_path), settings)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    server = _Server(config, before_exit)
    # Once it has shut down, uvicorn hands the stop signal on to the handler that was
    # there before it. That handler is this no-op: the stop is already under way, and
    # the caller still has its own shutdown to do (stop the worker, close the store).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    if then is not None:
        threading.Thread(target=_once_started, args=(server, then), daemon=True).start()
    server.run()
    if not server.started:
        fail(f"the API could not listen on {settings.api_host}:{settings.api_port}")
