"""VM specs for agent tests: a small valid one, changed by keyword."""

from __future__ import annotations

from typing import Any

from nubis.protocol import ImageRef, Ipam, Network, Nic, VmSpec

MIB = 1024 * 1024
IMAGE_VIRTUAL_SIZE = 64 * MIB


def vm_spec(**changes: Any) -> VmSpec:
    spec = VmSpec(
        id="vm-06bq1j0pkw7v8cs3d9j1e4tm5g",
        hostname="web1",
        cores=2,
        memory_bytes=512 * MIB,
        disk_bytes=1024 * MIB,
        image=ImageRef(
            id="img-06bq1j0pkw7v8cs3d9j1e4tm5h",
            sha256="0" * 64,
            size_bytes=10 * MIB,
            virtual_size_bytes=IMAGE_VIRTUAL_SIZE,
        ),
        running=True,
        reboots=0,
        nics=[],
        ssh_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3x alice@laptop"],
    )
    return spec.model_copy(update=changes)


def nic(index: int) -> Nic:
    return Nic(
        tap=f"ntweb1n{index}",
        number=index,
        mac=f"52:54:00:12:34:{index:02x}",
        address=f"fd12:3456:789a:1:5054:ff:fe12:34{index:02x}",
    )


MANUAL = Network(
    id="net-m",
    bridge="nbnetm",
    vxlan="nxnetm",
    vni=8,
    ipam=Ipam.MANUAL,
    prefix="fd00:8::/64",
    gateway="fd00:8::1",
    mac="02:00:00:00:08:01",
)
"""A project network with IPAM `manual`: the guest is told its address."""
