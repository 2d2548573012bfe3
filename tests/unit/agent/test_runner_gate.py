"""The agent's loop on the wire: after a start or a fence it starts VMs only once a
status POST went through and a desired state was fetched after it, and the statuses
after a fence say so."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from nubis.agent.fence import Watchdog
from nubis.agent.image_cache import ImageCache
from nubis.agent.reconciler import Reconciler
from nubis.agent.runner import Agent
from nubis.protocol import Desired, HostNetwork, HostReport, Peer, Status

DESIRED = Desired(
    revision=3,
    network=HostNetwork(bridge="nbvm", prefix="fd00:1::/64", gateway="fd00:1::1"),
    vms=[],
    peers=[Peer(host="host-2", address="127.0.0.2")],
    fence_seconds=10.0,
)
HELD, MAY_START = "pass (starts nothing)", "pass (may start)"


class Passes(Reconciler):
    """A reconciler that only notes, at each pass, whether it could start a VM."""

    def __init__(self, root: Path, may_start: Callable[[], bool], events: list[str]) -> None:
        super().__init__(root, ImageCache(root / "images", _no_image), "tcg", may_start=may_start)
        self.events = events

    def converge(self, desired: Desired) -> Status:
        self.events.append(MAY_START if self.may_start() else HELD)
        return Status(revision=desired.revision, vms=[])


def _no_image(image_id: str) -> Iterator[bytes]:
    raise AssertionError(f"no image is fetched here ({image_id})")


def _describe() -> HostReport:
    raise AssertionError("the host is not described here")


class ControlPlane:
    """Answers the agent's calls, noting each in `events`; stops the agent after
    `calls` of them. `before(method, count)` runs before each, `count` from 1."""

    def __init__(
        self, calls: int, before: Callable[[str, int], None], refuse: set[int] | None = None
    ) -> None:
        self.stop = threading.Event()
        self.refuse = refuse or set()
        self.calls = calls
        self.before = before
        self.events: list[str] = []
        self.statuses: list[Status] = []
        self._count = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self._count += 1
        self.before(request.method, self._count)
        if self._count >= self.calls:
            self.stop.set()
        self.events.append(request.method)
        if self._count in self.refuse:
            return httpx.Response(503, json={"detail": "not now"})
        if request.method == "POST":
            self.statuses.append(Status.model_validate(json.loads(request.content)))
            return httpx.Response(204)
        if int(request.url.params["after"]) >= DESIRED.revision:
            return httpx.Response(204)
        return httpx.Response(200, content=DESIRED.model_dump_json())


def _run(
    tmp_path: Path,
    calls: int,
    before: Callable[[Watchdog, str, int], None],
    refuse: set[int] | None = None,
) -> ControlPlane:
    """Run the agent's loop until the control plane had `calls` calls (those numbered
    in `refuse` it answers 503)."""
    watchdog = Watchdog(tmp_path / "vms", "127.0.0.1", state_dir=tmp_path)
    plane = ControlPlane(calls, lambda method, count: before(watchdog, method, count), refuse)
    agent = Agent(
        "http://plane.test", tmp_path, _describe, transport=httpx.MockTransport(plane.handle)
    )
    agent.retry_seconds = 0.01
    reconciler = Passes(tmp_path, watchdog.gate.may_start, plane.events)
    try:
        agent.converge_until(plane.stop, reconciler, watchdog)
    finally:
        reconciler.close()
    return plane


def test_a_started_agent_starts_vms_only_after_a_post_then_a_get(tmp_path: Path) -> None:
    plane = _run(tmp_path, 4, lambda *_: None)
    assert plane.events == ["GET", HELD, "POST", "GET", MAY_START, "POST"]
    assert [status.fenced for status in plane.statuses] == [False, False]
    assert [seen.host for seen in plane.statuses[0].peers] == ["host-2"]


def test_a_fenced_agent_reports_it_and_starts_vms_only_after_a_post_then_a_get(
    tmp_path: Path,
) -> None:
    def fence_at_the_fifth_call(watchdog: Watchdog, method: str, count: int) -> None:
        if count == 5:
            assert method == "GET"
            assert watchdog.gate.fence()

    plane = _run(tmp_path, 8, fence_at_the_fifth_call)
    assert plane.events == [
        "GET", HELD, "POST",
        "GET", MAY_START, "POST",
        "GET", HELD, "POST",  # the fence came during this GET
        "GET", MAY_START, "POST",
    ]  # fmt: skip
    assert [status.fenced for status in plane.statuses] == [False, False, True, False]


def test_a_failed_call_between_the_post_and_the_get_keeps_the_agent_from_starting(
    tmp_path: Path,
) -> None:
    def fence_then_refuse(watchdog: Watchdog, method: str, count: int) -> None:
        if count == 5:
            assert watchdog.gate.fence()

    plane = _run(tmp_path, 11, fence_then_refuse, refuse={7})
    assert plane.events == [
        "GET", HELD, "POST",
        "GET", MAY_START, "POST",
        "GET", HELD, "POST",  # fenced during this GET
        "GET",  # refused: the POST before counts no more
        "GET", HELD, "POST",
        "GET", MAY_START, "POST",
    ]  # fmt: skip
