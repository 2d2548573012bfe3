"""What the metadata service answers a VM, by path: what cloud-init asks a cloud for.

Answers are made from the asking VM's spec alone; which VM asks, the server
(`metadata.py`) finds from the port the request came in on.

Paths served (any EC2 version, `latest` or a date, gives the same answers; so does any
OpenStack version):

    /                                       EC2 versions
    /latest/meta-data/                      instance-id, hostname, local-hostname, public-keys/
    /latest/meta-data/public-keys/          0=key-0 ...
    /latest/meta-data/public-keys/0/openssh-key
    /latest/user-data                       404 when the VM has none
    PUT /latest/api/token                   an IMDSv2 token, for clients that insist on one;
                                            it is never checked: the port is the credential
    /openstack/                             OpenStack versions
    /openstack/latest/meta_data.json        uuid, name, hostname, public_keys
    /openstack/latest/user_data             404 when the VM has none
    /openstack/latest/network_data.json     each NIC's link and how it gets its address
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nubis.protocol import Ipam, Network, VmSpec

NetworkLookup = Callable[[str], Network | None]
"""A project network by its id (for a NIC's gateway), or None."""


def no_networks(network_id: str) -> Network | None:
    return None


_VERSION = re.compile(r"^(latest|\d{4}-\d{2}-\d{2})$")
"""A version of EC2's or OpenStack's metadata API: all answer alike."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


def _text(body: str) -> Answer:
    return Answer(200, body.encode())


def _listing(*names: str) -> Answer:
    return _text("".join(f"{name}\n" for name in names))


def _json(value: dict[str, Any]) -> Answer:
    return Answer(200, json.dumps(value, indent=2).encode(), "application/json")


NOT_FOUND = Answer(404, b"not found\n")
UNKNOWN_VM = Answer(403, b"no VM is known on this port\n")
NOT_ALLOWED = Answer(405, b"method not allowed\n")


def _user_data(vm: VmSpec) -> Answer:
    if vm.user_data is None:
        return NOT_FOUND
    return Answer(200, vm.user_data.encode(), "application/octet-stream")


def _ec2_meta_data(vm: VmSpec, rest: list[str]) -> Answer:
    match rest:
        case []:
            names = ["hostname", "instance-id", "local-hostname"]
            return _listing(*names, *(["public-keys/"] if vm.ssh_keys else []))
        case ["instance-id"]:
            return _text(vm.id)
        case ["hostname"] | ["local-hostname"]:
            return _text(vm.hostname)
        case ["public-keys"] if vm.ssh_keys:
            return _listing(*(f"{index}=key-{index}" for index in range(len(vm.ssh_keys))))
        case ["public-keys", index] | ["public-keys", index, "openssh-key"] if (
            index.isdigit() and int(index) < len(vm.ssh_keys)
        ):
            if len(rest) == 2:
                return _listing("openssh-key")
            return _text(vm.ssh_keys[int(index)])
    return NOT_FOUND


def _ec2(vm: VmSpec, rest: list[str]) -> Answer:
    match rest:
        case []:
            return _listing("meta-data/", *(["user-data"] if vm.user_data is not None else []))
        case ["meta-data", *deeper]:
            return _ec2_meta_data(vm, deeper)
        case ["user-data"]:
            return _user_data(vm)
    return NOT_FOUND


def network_data(vm: VmSpec, network_of: NetworkLookup = no_networks) -> dict[str, Any]:
    """OpenStack's network_data.json: a link per NIC, and how it gets its address.

    The host network's NICs and those of `auto` networks configure themselves by
    SLAAC; the address is given all the same, so that a guest (or a person) can check
    it got the one the cloud handed out. A `manual` network's NIC is told its address
    (`network_of` finds the network); an `ipam none` one only its link. A project
    network's NIC with a prefix also gets a default route through its gateway, for the
    guest to use for packets from that NIC's address.
    """
    links = []
    networks = []
    for index, nic in enumerate(vm.nics):
        link: dict[str, Any] = {"id": nic.tap, "type": "phy", "ethernet_mac_address": nic.mac}
        if nic.mtu is not None:
            link["mtu"] = nic.mtu
        links.append(link)
        if nic.address is None or nic.ipam is Ipam.NONE:
            continue
        prefix = ipaddress.IPv6Interface(f"{nic.address}/64").network
        entry: dict[str, Any] = {
            "id": f"network{index}",
            "link": nic.tap,
            "network_id": str(prefix) if nic.network is None else nic.network,
            "type": "ipv6_slaac",
            "ip_address": nic.address,
            "netmask": str(prefix.netmask),
        }
        if nic.network is not None:
            if nic.ipam is Ipam.MANUAL:
                entry["type"] = "ipv6"
            # The way out for packets from this address (the host network's NIC has the
            # default route; this one is for the replies of what came in here).
            network = network_of(nic.network)
            if network is not None and network.gateway is not None:
                default = {"network": "::", "netmask": "::", "gateway": network.gateway}
                entry["routes"] = [default]
        networks.append(entry)
    return {"links": links, "networks": networks, "services": []}


def _openstack(vm: VmSpec, rest: list[str], network_of: NetworkLookup) -> Answer:
    match rest:
        case []:
            names = ["meta_data.json", "network_data.json"]
            return _listing(*names, *(["user_data"] if vm.user_data is not None else []))
        case ["meta_data.json"]:
            keys = {f"key-{index}": key for index, key in enumerate(vm.ssh_keys)}
            return _json(
                {"uuid": vm.id, "name": vm.hostname, "hostname": vm.hostname, "public_keys": keys}
            )
        case ["network_data.json"]:
            return _json(network_data(vm, network_of))
        case ["user_data"]:
            return _user_data(vm)
    return NOT_FOUND


def answer(
    method: str, path: str, vm: VmSpec | None, network_of: NetworkLookup = no_networks
) -> Answer:
    """The answer to `method path` from `vm`'s port (None: a port no VM is known on)."""
    if vm is None:
        return UNKNOWN_VM
    parts = [part for part in path.split("?", 1)[0].split("/") if part]
    if method == "PUT":
        if len(parts) == 3 and parts[1:] == ["api", "token"] and _VERSION.match(parts[0]):
            return _text(secrets.token_urlsafe(32))
        return NOT_ALLOWED
    if method not in ("GET", "HEAD"):
        return NOT_ALLOWED
    match parts:
        case []:
            return _listing("2009-04-04", "latest")
        case ["openstack"]:
            return _listing("latest")
        case ["openstack", version, *rest] if _VERSION.match(version):
            return _openstack(vm, rest, network_of)
        case [version, *rest] if _VERSION.match(version):
            return _ec2(vm, rest)
    return NOT_FOUND
