"""The agent's loop: join once (keeping the credential), then heartbeat until stopped.

A control plane that does not answer is retried forever: an outage of the control
plane must never stop anything on the host.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import httpx

from nubis.protocol import Heartbeat, HostReport, Registered, Registration

log = logging.getLogger(__name__)

CREDENTIAL_FILE = "credential.json"
RETRY_SECONDS = 2.0


class Agent:
    def __init__(
        self,
        api_url: str,
        state_dir: Path,
        report: HostReport,
        *,
        join_token: str | None = None,
        interval: float = 2.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.state_dir = state_dir
        self.report = report
        self.join_token = join_token
        self.interval = interval
        self._http = httpx.Client(base_url=self.api_url, timeout=10.0)

    @property
    def _credential_path(self) -> Path:
        return self.state_dir / CREDENTIAL_FILE

    def stored(self) -> Registered | None:
        if not self._credential_path.exists():
            return None
        return Registered.model_validate_json(self._credential_path.read_text())

    def register(self) -> Registered:
        """Exchange the join token for a credential, and keep it (mode 0600)."""
        if not self.join_token:
            raise SystemExit(
                f"this host has not joined yet ({self._credential_path} is missing): "
                "give --join-token (from `nubis admin host join-token`)"
            )
        body = Registration(join_token=self.join_token, host=self.report)
        response = self._http.post("/v1/agent/register", json=body.model_dump())
        if response.status_code != 201:
            detail = _detail(response)
            raise SystemExit(f"the control plane refused to register this host: {detail}")
        registered = Registered.model_validate(response.json())
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self._credential_path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(registered.model_dump_json())
        partial.replace(self._credential_path)
        log.info("joined as %s (%s)", self.report.name, registered.host_id)
        return registered

    def run(self, stop: threading.Event) -> None:
        registered = self.stored()
        while registered is None and not stop.is_set():
            try:
                registered = self.register()
            except httpx.TransportError as error:
                log.warning("cannot reach %s to register: %s", self.api_url, error)
                stop.wait(RETRY_SECONDS)
        if registered is None:
            return
        headers = {"Authorization": f"Bearer {registered.credential}"}
        while not stop.is_set():
            try:
                response = self._http.post(
                    "/v1/agent/heartbeat", json=Heartbeat().model_dump(), headers=headers
                )
                if response.status_code != 204:
                    log.warning("heartbeat refused: %s", _detail(response))
            except httpx.TransportError as error:
                log.warning("cannot reach %s: %s", self.api_url, error)
            stop.wait(self.interval)
        self._http.close()


def _detail(response: httpx.Response) -> str:
    try:
        return str(json.loads(response.text).get("detail", response.text))
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"
