"""The agent's loop: join once (keeping the credential), then long-poll the desired
state, converge the host to it and report what it sees, until stopped.

The status report after each pass is also the host's heartbeat: a pass runs at least
every `interval` seconds, changed or not. A control plane that does not answer is
retried forever: an outage of the control plane must never stop anything on the host.

Beside the loop, the `Watchdog` (its own thread) probes the peers and fences the host
when it reaches neither the control plane nor half of its peers (see `fence`). The
agent starts no VM until its `Gate` opens: once a status POST went through and the
GET right after it fetched the desired state, both when the agent starts and after a
fence.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from nubis.agent.console_relay import ConsoleRelay
from nubis.agent.fence import Watchdog
from nubis.agent.image_cache import ImageCache
from nubis.agent.qemu import process
from nubis.agent.reconciler import Reconciler
from nubis.console_grant import host_key
from nubis.protocol import (
    CONSOLE_PORT,
    Desired,
    HostReport,
    Registered,
    Registration,
    Status,
)

log = logging.getLogger(__name__)

CREDENTIAL_FILE = "credential.json"
RETRY_SECONDS = 2.0
BUSY_WAIT_SECONDS = 0.25
"""The long poll's wait while a VM is on its way (its image coming, powering off), so
the pass that finishes it is not a whole interval late."""
TIMEOUT_SECONDS = 10.0
CHUNK_BYTES = 1024 * 1024


class _Refused(Exception):
    """The control plane answered, but not with what was asked for."""


class Agent:
    def __init__(
        self,
        api_url: str,
        state_dir: Path,
        describe: Callable[[], HostReport],
        *,
        join_token: str | None = None,
        interval: float = 2.0,
        stop_timeout: float = process.STOP_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`describe` says what this host is; it is called once `run` starts, since
        finding the acceleration may take a while (a probe guest boots). `transport`:
        how calls reach the control plane (default: HTTP)."""
        self.api_url = api_url.rstrip("/")
        self.state_dir = state_dir
        self.describe = describe
        self.join_token = join_token
        self.interval = interval
        self.retry_seconds = RETRY_SECONDS
        self.stop_timeout = stop_timeout
        self._http = httpx.Client(
            base_url=self.api_url, timeout=TIMEOUT_SECONDS, transport=transport
        )
        self._credential = ""

    @property
    def _credential_path(self) -> Path:
        return self.state_dir / CREDENTIAL_FILE

    def stored(self) -> Registered | None:
        if not self._credential_path.exists():
            return None
        return Registered.model_validate_json(self._credential_path.read_text())

    def register(self, report: HostReport) -> Registered:
        """Exchange the join token for a credential, and keep it (mode 0600)."""
        if not self.join_token:
            raise SystemExit(
                f"this host has not joined yet ({self._credential_path} is missing): "
                "give --join-token (from `nubis admin host join-token`)"
            )
        body = Registration(join_token=self.join_token, host=report)
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
        log.info("joined as %s (%s)", report.name, registered.host_id)
        return registered

    def run(self, stop: threading.Event) -> None:
        vms_root = Path(os.path.abspath(self.state_dir / "vms"))
        # Restarted on a host that is cut off, the agent may not even learn its underlay
        # address (it has no route to the control plane): the watch an earlier agent
        # left keeps fencing meanwhile.
        watchdog = Watchdog.resumed(vms_root, self.state_dir)
        if watchdog is not None:
            watchdog.start()
        try:
            report = self._describe_until(stop)
            registered = self.stored()
            while report is not None and registered is None and not stop.is_set():
                try:
                    registered = self.register(report)
                except httpx.TransportError as error:
                    log.warning("cannot reach %s to register: %s", self.api_url, error)
                    stop.wait(self.retry_seconds)
            if report is None or registered is None:
                return
            self._credential = registered.credential
            if watchdog is None or watchdog.address != report.underlay_address:
                if watchdog is not None:
                    watchdog.stop()
                watchdog = Watchdog(vms_root, report.underlay_address, state_dir=self.state_dir)
                watchdog.start()
            consoles = _console_relay(vms_root, report.underlay_address, registered.credential)
            images = ImageCache(self.state_dir / "images", self._image_chunks)
            reconciler = Reconciler(
                self.state_dir,
                images,
                report.acceleration,
                stop_timeout=self.stop_timeout,
                underlay_address=report.underlay_address,
                may_start=watchdog.gate.may_start,
            )
            try:
                self.converge_until(stop, reconciler, watchdog)
            finally:
                reconciler.close()
                if consoles is not None:
                    consoles.stop()
        finally:
            if watchdog is not None:
                watchdog.stop()
            self._http.close()

    def _describe_until(self, stop: threading.Event) -> HostReport | None:
        """What this host is, asked again until it can be said (its underlay address
        needs a route to the control plane); None if stopped first."""
        while not stop.is_set():
            try:
                return self.describe()
            except OSError as error:
                log.warning("cannot describe this host yet: %s", error)
                stop.wait(self.retry_seconds)
        return None

    def converge_until(
        self, stop: threading.Event, reconciler: Reconciler, watchdog: Watchdog
    ) -> None:
        """Long-poll, converge and report until `stop`; a VM starts only once the
        watchdog's gate is open (see `fence.Gate`)."""
        gate = watchdog.gate
        desired: Desired | None = None
        while not stop.is_set():
            try:
                # The gate opens with the GET right after a POST, with no fence since
                # either began.
                epoch = gate.epoch
                soon = reconciler.busy or not gate.may_start()
                fresh = self._desired(
                    desired.revision if desired else -1,
                    BUSY_WAIT_SECONDS if soon else self.interval,
                )
                gate.fetched(epoch)
                desired = fresh or desired
                if desired is None:
                    continue
                watchdog.watch(desired.peers, desired.fence_seconds)
                epoch = gate.epoch
                status = reconciler.converge(desired).model_copy(
                    update={"peers": watchdog.seen(), "fenced": gate.fenced}
                )
                # Only a status the control plane took is a heartbeat: a host whose
                # GETs work and POSTs fail is silent to it, and must fence in time.
                began = watchdog.now()
                self._report(status)
                watchdog.reached(began)
                gate.posted(epoch)
                reconciler.delivered()
            except httpx.TransportError as error:
                if stop.is_set():
                    break  # the API went away because the stop was asked for
                log.warning("cannot reach %s: %s", self.api_url, error)
                gate.failed()
                stop.wait(self.retry_seconds)
            except _Refused as error:
                log.warning("%s", error)
                gate.failed()
                stop.wait(self.retry_seconds)
            except Exception:
                log.exception("the pass failed; trying again")
                gate.failed()
                stop.wait(self.retry_seconds)

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._credential}", "Content-Type": "application/json"}

    def _desired(self, after: int, wait: float) -> Desired | None:
        """The desired state past revision `after`, waiting up to `wait` seconds for it."""
        response = self._http.get(
            "/v1/agent/desired",
            params={"after": after, "wait": wait},
            headers=self._headers,
            timeout=TIMEOUT_SECONDS + wait,
        )
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise _Refused(f"the desired state was refused: {_detail(response)}")
        return Desired.model_validate_json(response.content)

    def _report(self, status: Status) -> None:
        response = self._http.post(
            "/v1/agent/status", content=status.model_dump_json(), headers=self._headers
        )
        if response.status_code != 204:
            raise _Refused(f"the status report was refused: {_detail(response)}")

    def _image_chunks(self, image_id: str) -> Iterator[bytes]:
        """An image's bytes from the control plane; its own client, since fetches run in
        threads of their own."""
        timeout = httpx.Timeout(TIMEOUT_SECONDS, read=60.0)
        with (
            httpx.Client(base_url=self.api_url, timeout=timeout) as client,
            client.stream("GET", f"/v1/agent/images/{image_id}", headers=self._headers) as got,
        ):
            if got.status_code != 200:
                got.read()
                raise _Refused(f"the image was refused: {_detail(got)}")
            yield from got.iter_bytes(CHUNK_BYTES)


def _detail(response: httpx.Response) -> str:
    try:
        return str(json.loads(response.text).get("detail", response.text))
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"


def _console_relay(vms_root: Path, address: str, credential: str) -> ConsoleRelay | None:
    """The console port, started; None if it cannot listen (the VMs run all the same,
    without consoles in the browser)."""
    try:
        relay = ConsoleRelay(vms_root, address, host_key(credential))
    except OSError as error:
        log.warning("cannot serve consoles on [%s]:%d: %s", address, CONSOLE_PORT, error)
        return None
    relay.start()
    return relay
