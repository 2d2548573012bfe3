"""The test playing a host's agent over the agent API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from nubis.protocol import Desired


@dataclass
class Agent:
    """The test playing a host's agent."""

    client: TestClient
    credential: str
    revision: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    def desired(self, *, anyway: bool = False) -> Desired:
        """The desired state past the revision last seen; `anyway`: whatever it is."""
        after = -1 if anyway else self.revision
        answer = self.client.get("/v1/agent/desired", params={"after": after}, headers=self.auth)
        assert answer.status_code == 200, answer.text
        desired = Desired.model_validate(answer.json())
        self.revision = desired.revision
        return desired

    def report(self, **states: str) -> None:
        """Report the VMs' states (by VM id)."""
        self.send(states)

    def send(
        self, states: dict[str, str], *, peers: dict[str, float] | None = None, fenced: bool = False
    ) -> None:
        """Report the VMs' states, and `peers`: seconds since each (by host id) answered."""
        vms = [{"id": vm, "state": state, "reboots": 0} for vm, state in states.items()]
        seen = [{"host": host, "silent_seconds": s} for host, s in (peers or {}).items()]
        body: dict[str, Any] = {
            "revision": self.revision,
            "vms": vms,
            "peers": seen,
            "fenced": fenced,
        }
        answer = self.client.post("/v1/agent/status", json=body, headers=self.auth)
        assert answer.status_code == 204, answer.text
