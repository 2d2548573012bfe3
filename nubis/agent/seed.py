"""A VM's cloud-init NoCloud seed: a small FAT image labelled `cidata`.

It holds `meta-data` (instance id, hostname, SSH keys), `user-data` (the user's, or
an empty cloud-config) and, for a VM with NICs, `network-config`. The image is made
with `mkfs.vfat` and filled with `mcopy`: no mount, no loop device, no root needed.
The files are written as JSON, which is YAML too: no quoting of a hostname or a key
comment can change what they say.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from nubis.agent.disk import put_in_place, run
from nubis.agent.net.metadata_answers import NetworkLookup
from nubis.protocol import Ipam, Network, VmSpec

LABEL = "CIDATA"
"""cloud-init finds the seed by this label (it accepts either case)."""
EMPTY_USER_DATA = "#cloud-config\n{}\n"
MIN_KIB = 1024
_SLACK_KIB = 512
"""Room for the FAT tables, the root directory and partly used clusters."""


def meta_data(spec: VmSpec) -> str:
    return _document(
        {
            "instance-id": spec.id,
            "local-hostname": spec.hostname,
            "public-keys": list(spec.ssh_keys),
        }
    )


def user_data(spec: VmSpec) -> str:
    return spec.user_data or EMPTY_USER_DATA


def network_config(spec: VmSpec, network_of: NetworkLookup | None = None) -> str | None:
    """Network config version 2: each NIC found by its MAC, with the MTU of its link
    when that is not Ethernet's. No DHCP: the networks are IPv6. None for a VM without
    NICs.

    The host network's NICs and those of `auto` networks take router advertisements
    and have their known address set as well, since the guard lets a NIC send only from
    that one and a guest may otherwise pick another (stable-privacy) address. A
    `manual` network's NIC gets its address and a default route by the network's
    gateway (`network_of` finds the network) and ignores router advertisements; an
    `ipam none` one only its link-local address.
    """
    if not spec.nics:
        return None
    ethernets: dict[str, object] = {}
    for index, nic in enumerate(spec.nics):
        ethernet: dict[str, object] = {
            "match": {"macaddress": nic.mac},
            "dhcp4": False,
            "dhcp6": False,
            "accept-ra": nic.ipam is Ipam.AUTO,
        }
        if nic.address and nic.ipam is not Ipam.NONE:
            ethernet["addresses"] = [f"{nic.address}/64"]
        network: Network | None = None
        if nic.network is not None and network_of is not None:
            network = network_of(nic.network)
        if nic.ipam is Ipam.MANUAL and network is not None and network.gateway is not None:
            ethernet["routes"] = [{"to": "::/0", "via": network.gateway}]
        if nic.mtu is not None:
            ethernet["mtu"] = nic.mtu
        ethernets[f"nic{index}"] = ethernet
    return _document({"version": 2, "ethernets": ethernets})


def files(spec: VmSpec, network_of: NetworkLookup | None = None) -> dict[str, str]:
    """The seed's files by name."""
    contents = {"meta-data": meta_data(spec), "user-data": user_data(spec)}
    network = network_config(spec, network_of)
    if network is not None:
        contents["network-config"] = network
    return contents


def size_kib(contents: dict[str, str]) -> int:
    """The FAT image's size for these files, in KiB (what `mkfs.vfat -C` takes)."""
    data = sum(len(text.encode()) for text in contents.values())
    return max(MIN_KIB, -(-data // 1024) + _SLACK_KIB)


def write_seed(spec: VmSpec, path: Path, network_of: NetworkLookup | None = None) -> Path:
    """Write the seed image of `spec` at `path`, replacing one that is there.

    A running VM keeps reading the seed it opened; the new one is seen at its next start.
    """
    contents = files(spec, network_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="nubis-seed-") as scratch:
        sources = []
        for name, text in contents.items():
            source = Path(scratch) / name
            source.write_text(text)
            sources.append(str(source))
        run(["mkfs.vfat", "-n", LABEL, "-C", str(partial), str(size_kib(contents))])
        # mtools checks the image against a floppy geometry unless told not to.
        run(["mcopy", "-i", str(partial), *sources, "::"], env={"MTOOLS_SKIP_CHECK": "1"})
    put_in_place(partial, path)
    return path


def _document(value: dict[str, object]) -> str:
    return json.dumps(value, indent=2) + "\n"
