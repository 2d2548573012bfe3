"""The wire types between the control plane and host agents; both sides import only this.

Sizes are bytes, counts are integers.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HostReport(_Wire):
    """What a host is, as its agent found it."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    arch: str = Field(min_length=1, max_length=16)
    cores: int = Field(gt=0, le=4096)
    threads: int = Field(gt=0, le=8192)
    memory_bytes: int = Field(gt=0)
    hugepages: int = Field(ge=0)
    """1 GiB huge pages set aside for VMs."""
    disk_bytes: int = Field(ge=0)
    underlay_address: str = Field(min_length=2, max_length=45)
    acceleration: str = Field(pattern="^(kvm|tcg)$")
    """`kvm` only where a guest was seen to boot under it."""


class Registration(_Wire):
    join_token: str = Field(min_length=1, max_length=200)
    host: HostReport


class Registered(_Wire):
    host_id: str
    credential: str
    """The host's secret for every later call; the control plane keeps only its hash."""


class Heartbeat(_Wire):
    """I am alive (later: and this is what runs here)."""
