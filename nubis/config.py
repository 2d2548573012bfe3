"""Settings, read from NUBIS_* environment variables.

Every setting has a default that works for `nubis up` on one machine; a production
control plane sets at least NUBIS_DATABASE_URL to a PostgreSQL server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FENCE_ACT_SECONDS = 3.0
"""How long an agent may take, once its fence time ran out, to have stopped every VM:
its check interval and the kill of each QEMU process."""


def default_data_dir() -> Path:
    """`/var/lib/nubis` for root, else the user's XDG data home."""
    if os.geteuid() == 0:
        return Path("/var/lib/nubis")
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "nubis"


class EngineSettings(BaseSettings):
    """How workers run strands."""

    model_config = SettingsConfigDict(env_prefix="NUBIS_", extra="ignore")

    lease_seconds: float = Field(default=120.0, gt=0)
    """How long a worker owns a strand it took; it kills itself before this runs out."""
    max_tries: int = Field(default=10, ge=1)
    """Attempts at one label before the strand stops in the `failed` state."""
    backoff_base_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    idle_wait_seconds: float = Field(default=10.0, gt=0)
    """Longest an idle worker sleeps without a wake-up, a safety net for lost notifications."""
    strand_retention_seconds: float = Field(default=7 * 24 * 3600.0, ge=0)
    """How long an exited strand is kept for inspection."""


class Settings(EngineSettings):
    """Everything a nubis process reads from its environment."""

    host_unreachable_seconds: float = Field(default=5.0, gt=0)
    """A host without a heartbeat for this long is `unreachable` (an alert). Also how
    fresh a host's report of its peers must be to count (see docs/hosts.md)."""
    host_fence_seconds: float = Field(default=10.0, gt=0)
    """An agent that reached neither the control plane nor a majority of its peers for
    this long stops its VMs (self-fencing)."""
    host_dead_seconds: float = Field(default=20.0, gt=0)
    """A host without a heartbeat for this long, that its peers confirm silent as long,
    is `dead` and its VMs are recreated elsewhere."""

    image_max_bytes: int = Field(default=64 * 1024**3, gt=0)
    """The largest image file an upload may send."""
    placement_policy: Literal["spread", "pack"] = "spread"
    """`spread`: a new VM goes to the least used host; `pack`: to the most used that fits."""

    tiny_image: bool = True
    """Whether `nubis up` builds the tiny guest image and adds it as the public image
    `tiny` (once, in the background) when there is none."""

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str = ""
    """SQLAlchemy URL; empty means SQLite in the data dir."""
    secret_key_file: Path | None = None
    """The key that seals secrets at rest; empty means `secret.key` in the data dir.
    Every API process of one control plane needs the same key."""
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8765, ge=1, le=65535)
    worker_threads: int = Field(default=2, ge=1, le=256)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if self.host_dead_seconds <= self.host_unreachable_seconds:
            raise ValueError("NUBIS_HOST_DEAD_SECONDS must be longer than ..._UNREACHABLE_SECONDS")
        # A fenced host must have stopped its VMs before they start elsewhere; the
        # peers' reports that confirm a death may be one unreachable window old.
        fenced_by = self.host_fence_seconds + self.host_unreachable_seconds + FENCE_ACT_SECONDS
        if fenced_by > self.host_dead_seconds:
            raise ValueError(
                "NUBIS_HOST_DEAD_SECONDS must be at least NUBIS_HOST_FENCE_SECONDS + "
                f"NUBIS_HOST_UNREACHABLE_SECONDS + {FENCE_ACT_SECONDS:g} s "
                f"({fenced_by:g} s): a dead host's VMs must have stopped before they move"
            )
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'nubis.db'}"
        return self

    @property
    def secret_key_path(self) -> Path:
        return self.secret_key_file or self.data_dir / "secret.key"

    @property
    def api_url(self) -> str:
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        return f"http://{host}:{self.api_port}"
