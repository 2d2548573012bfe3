"""Project networks end to end: VXLAN across three hosts, the three IPAM modes, the
guard and the firewall, with real QEMU guests under TCG (docs/networks.md).

One cloud serves the whole module, as building it and booting its guests is most of
the cost. The user's project has the networks `blue` (auto), `green` (manual) and
`plain` (none) and a VM in all three on each host (`a1`, `a2`, `a3`, spread by an
anti-affinity group); the operator's project has the network `red` with the VM `b1`,
on one of the same hosts. The tests run in order; the last one deletes everything.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from nubis.addresses import link_local
from nubis.guestimage import tiny
from nubis.ids import Kind, parse_id
from nubis.networks import group
from nubis.vms import tap_name
from tests.e2e import guests
from tests.e2e.capture import capture
from tests.e2e.cloud import LOCATION, Cloud, Host
from tests.e2e.guests import NEEDS_GUESTS, host_of, ssh, ssh_run, wait_ready, wait_until
from tests.e2e.processes import checked

pytestmark = NEEDS_GUESTS

HOSTILE = "hostile"
"""The image of the `a` VMs: the tiny guest with radvd and a netcat that speaks UDP."""
SPREAD = ("a1", "a2", "a3")
OUTSIDER = "b1"
SETTLE_SECONDS = 60.0
"""For a change (flooding, a rule, a NIC) to reach the hosts and the guests."""
SSH_BANNER = "SSH-2.0-"
REACH_SECONDS = 30.0
ROGUE_PREFIX = "fd66:6666:6666:6666::/64"
AGENTS = ("nb", "nx", "nt")
"""The prefixes of the links an agent makes."""


@pytest.fixture(scope="module")
def hostile_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny guest with the tools to forge what busybox cannot (docs/vms.md)."""
    out = tmp_path_factory.mktemp("hostile") / "hostile.qcow2"
    return tiny.build(out, extra_packages=tiny.HOSTILE_TOOLS)


@pytest.fixture(scope="module")
def cloud(tiny_image: Path, hostile_image: Path) -> Iterator[Cloud]:
    with Cloud(3) as made:
        checked(made.admin("image", "add", str(tiny_image), "--name", guests.IMAGE))
        checked(made.admin("image", "add", str(hostile_image), "--name", HOSTILE))
        guests.add_key(made)
        guests.add_key(made, "operator")
        for name, ipam in (("blue", "auto"), ("green", "manual"), ("plain", "none")):
            checked(made.cli("network", "create", name, "--ipam", ipam))
        checked(made.cli("network", "create", "red", operator=True))
        networks = ("--network", "blue", "--network", "green", "--network", "plain")
        guests.create_together(made, SPREAD, "--group", "spread", *networks, image=HOSTILE)
        guests.create(made, OUTSIDER, "--network", "red", "--wait", operator=True)
        for name in SPREAD:
            wait_ready(made, name)
        wait_ready(made, OUTSIDER, operator=True)
        yield made


# --- what the user and the hosts show --------------------------------------------------


def _vm(cloud: Cloud, name: str) -> dict[str, Any]:
    operator = name == OUTSIDER
    vm: dict[str, Any] = cloud.cli_json("vm", "show", name, operator=operator)
    return vm


def _nic(cloud: Cloud, vm: str, network: str) -> dict[str, Any]:
    """The NIC `vm` has in `network` (by the network's name)."""
    for nic in _vm(cloud, vm)["nics"]:
        if nic["network_name"] == network:
            return dict(nic)
    raise AssertionError(f"{vm} has no NIC in {network}")


def _run(cloud: Cloud, vm: str, script: str) -> str:
    """What a shell script printed in the guest."""
    return ssh(cloud, vm, script, operator=vm == OUTSIDER)


def _link_of(cloud: Cloud, vm: str, mac: str) -> str:
    """The guest's interface name for the NIC with `mac`."""
    listing = _run(
        cloud, vm, 'for l in /sys/class/net/eth*; do echo "${l##*/} $(cat $l/address)"; done'
    )
    for line in listing.splitlines():
        name, _, address = line.partition(" ")
        if address.strip() == mac:
            return name
    raise AssertionError(f"{vm} has no interface with MAC {mac}: {listing}")


def _pings(cloud: Cloud, vm: str, address: str, link: str | None = None) -> bool:
    interface = f"-I {link} " if link else ""
    done = ssh_run(cloud, vm, f"ping -6 -c 2 -W 3 {interface}{address}", operator=vm == OUTSIDER)
    return done.returncode == 0


def _reaches_ssh(cloud: Cloud, vm: str, address: str) -> bool:
    """Whether the SSH port of `address` answers `vm` with its banner."""
    done = ssh_run(cloud, vm, f"echo | nc -w 3 {address} 22 | head -n 1", operator=vm == OUTSIDER)
    return SSH_BANNER in done.stdout


def _wait_pings(cloud: Cloud, vm: str, address: str, link: str | None = None) -> None:
    """Wait until `vm` pings `address`: a guest that just booted, or a neighbour it
    has not talked to yet, may take a few seconds (TCG is slow, neighbour discovery
    tries thrice a second apart)."""
    wait_until(f"{vm} pings {address}", partial(_pings, cloud, vm, address, link), REACH_SECONDS)


def _wait_ssh(cloud: Cloud, vm: str, address: str) -> None:
    wait_until(
        f"{vm} reaches the SSH port of {address}",
        partial(_reaches_ssh, cloud, vm, address),
        REACH_SECONDS,
    )


def _host(cloud: Cloud, vm: str) -> Host:
    return host_of(cloud, _vm(cloud, vm))


def _tap(cloud: Cloud, vm: str, network: str) -> str:
    return _tap_of(_vm(cloud, vm)["id"], _nic(cloud, vm, network)["number"])


def _tap_of(vm_id: str, number: int) -> str:
    return tap_name(parse_id(Kind.VM, vm_id), number)


def _neighbours(cloud: Cloud) -> tuple[str, str]:
    """An `a` VM on the outsider's host (the host routes to it) and one elsewhere."""
    outsider_host = _host(cloud, OUTSIDER).name
    here = [name for name in SPREAD if _host(cloud, name).name == outsider_host]
    there = [name for name in SPREAD if name not in here]
    return here[0], there[0]


# --- tests -----------------------------------------------------------------------------


def test_vms_of_an_auto_network_on_three_hosts_reach_each_other(cloud: Cloud) -> None:
    assert len({_host(cloud, name).name for name in SPREAD}) == 3
    blue = {name: _nic(cloud, name, "blue") for name in SPREAD}
    for name, nic in blue.items():
        shown = _run(cloud, name, "ip -6 addr show scope global")
        assert nic["address"] in shown, f"{name} did not configure {nic['address']}"
    for other in ("a2", "a3"):
        _wait_pings(cloud, "a1", blue[other]["address"])
        _wait_ssh(cloud, "a1", blue[other]["address"])


def test_a_manual_network_s_addresses_come_from_the_metadata_service(cloud: Cloud) -> None:
    green = {name: _nic(cloud, name, "green") for name in SPREAD}
    for name, nic in green.items():
        link = _link_of(cloud, name, nic["mac"])
        shown = _run(cloud, name, f"ip -6 addr show dev {link}")
        assert nic["address"] in shown
    for other in ("a2", "a3"):
        _wait_pings(cloud, "a1", green[other]["address"])
        _wait_ssh(cloud, "a1", green[other]["address"])


def test_a_network_without_ipam_is_plain_layer_2_between_link_local_addresses(
    cloud: Cloud,
) -> None:
    plain = {name: _nic(cloud, name, "plain") for name in SPREAD}
    assert {nic["address"] for nic in plain.values()} == {None}
    link = _link_of(cloud, "a1", plain["a1"]["mac"])
    shown = _run(cloud, "a1", f"ip -6 addr show dev {link}")
    assert "scope global" not in shown
    for other in ("a2", "a3"):
        _wait_pings(cloud, "a1", link_local(plain[other]["mac"]), link)


def _fdb_remotes(cloud: Cloud, host: Host, vxlan: str) -> set[str]:
    listed = cloud.exec_in(host, "bridge", "fdb", "show", "dev", vxlan).stdout
    return set(re.findall(r"^00:00:00:00:00:00 dst (\S+)", listed, re.MULTILINE))


def _wait_flooding(cloud: Cloud, hosts: list[Host], vxlan: str, group: str | None) -> None:
    """Wait until each host's VXLAN floods to its multicast `group` alone, or (None) to
    each of the other hosts by an FDB entry of its own."""
    for host in hosts:
        others = {h.address for h in hosts if h is not host} if group is None else {group}
        wait_until(
            f"{host.name} floods {vxlan} to {others}",
            partial(lambda host, others: _fdb_remotes(cloud, host, vxlan) == others, host, others),
            SETTLE_SECONDS,
        )


def test_unicast_flooding_keeps_an_fdb_entry_for_each_other_host(cloud: Cloud) -> None:
    blue = cloud.cli_json("network", "show", "blue")
    vxlan = "nx" + blue["id"][-12:]
    hosts = [_host(cloud, name) for name in SPREAD]
    _wait_flooding(cloud, hosts, vxlan, group(blue["vni"]))
    checked(cloud.admin("location", "set", LOCATION, "--flooding", "unicast"))
    try:
        _wait_flooding(cloud, hosts, vxlan, None)
        for other in ("a2", "a3"):
            _wait_pings(cloud, "a1", _nic(cloud, other, "blue")["address"])
    finally:
        checked(cloud.admin("location", "set", LOCATION, "--flooding", "multicast"))
    _wait_flooding(cloud, hosts, vxlan, group(blue["vni"]))
    _wait_pings(cloud, "a1", _nic(cloud, "a3", "blue")["address"])


def test_another_project_s_network_sees_none_of_it_and_reaches_none_of_it(
    cloud: Cloud,
) -> None:
    here, _ = _neighbours(cloud)
    blue = {name: _nic(cloud, name, "blue") for name in SPREAD}
    blue_macs = {nic["mac"] for nic in blue.values()}
    blue_addresses = {nic["address"] for nic in blue.values()}
    host = _host(cloud, OUTSIDER)
    with capture(host.namespace, _tap(cloud, OUTSIDER, "red")) as seen:
        for other in SPREAD:
            if other != here:
                _wait_pings(cloud, here, blue[other]["address"])
    leaked = [
        frame
        for frame in seen.sent
        if frame.source_mac in blue_macs
        or frame.source in blue_addresses
        or frame.destination in blue_addresses
    ]
    assert leaked == []
    for name in SPREAD:
        assert not _pings(cloud, OUTSIDER, blue[name]["address"])
        assert not _reaches_ssh(cloud, OUTSIDER, blue[name]["address"])


def test_frames_a_guest_forges_never_reach_its_neighbour(cloud: Cloud) -> None:
    forger, victim = "a1", "a2"
    nic = _nic(cloud, forger, "blue")
    target = _nic(cloud, victim, "blue")["address"]
    link = _link_of(cloud, forger, nic["mac"])
    forged_mac = "02:de:ad:be:ef:01"
    prefix = cloud.cli_json("network", "show", "blue")["prefix"].split("/")[0]
    forged_address = prefix.rstrip(":") + ":dead:beef:dead:beef"
    victim_host, forger_host = _host(cloud, victim), _host(cloud, forger)
    with (
        capture(forger_host.namespace, _tap(cloud, forger, "blue")) as made,
        capture(victim_host.namespace, _tap(cloud, victim, "blue")) as seen,
    ):
        # The honest ping first: the capture sees what does get through.
        _wait_pings(cloud, forger, target)
        _run(
            cloud,
            forger,
            # No duplicate address detection, so that the address is usable at once.
            f"echo 0 > /proc/sys/net/ipv6/conf/{link}/accept_dad; "
            f"ip -6 addr add {forged_address}/64 dev {link}; "
            f"ping -6 -c 2 -W 1 -I {forged_address} {target}; "
            f"ip -6 addr del {forged_address}/64 dev {link}; "
            f"ip link set dev {link} address {forged_mac}; "
            f"ping -6 -c 2 -W 1 {target}; "
            f"ip link set dev {link} address {nic['mac']}; true",
        )
        _send_router_advertisement(cloud, forger, link)
        _send_dhcpv6_advertise(cloud, forger, link, link_local(_nic(cloud, victim, "blue")["mac"]))
    # The forger did send all four: its own tap received them.
    forged = made.received
    assert [frame for frame in forged if frame.source_mac == forged_mac]
    assert [frame for frame in forged if frame.source == forged_address]
    assert [frame for frame in forged if frame.icmpv6_type == 134]
    assert [frame for frame in forged if frame.udp_source_port == 547]
    # None of them reached the victim, while the honest ping did.
    sent = seen.sent
    assert any(frame.source == nic["address"] and frame.icmpv6_type == 128 for frame in sent)
    assert [frame for frame in sent if frame.source_mac == forged_mac] == []
    assert [frame for frame in sent if frame.source == forged_address] == []
    router_advertisements = [frame for frame in sent if frame.icmpv6_type == 134]
    assert [frame for frame in router_advertisements if frame.source_mac == nic["mac"]] == []
    assert [frame for frame in sent if frame.udp_source_port == 547] == []


def _send_router_advertisement(cloud: Cloud, vm: str, link: str) -> None:
    """radvd in the guest announces a prefix of its own for a few seconds (a router
    sends its first advertisements at once)."""
    _run(
        cloud,
        vm,
        "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding; "
        f"printf 'interface {link} {{ AdvSendAdvert on; prefix {ROGUE_PREFIX} {{ }}; }};\\n' "
        "> /tmp/rogue.conf; "
        "radvd -C /tmp/rogue.conf -p /tmp/rogue.pid -m stderr; sleep 4; "
        'kill "$(cat /tmp/rogue.pid)"; '
        "echo 0 > /proc/sys/net/ipv6/conf/all/forwarding; true",
    )


def _send_dhcpv6_advertise(cloud: Cloud, vm: str, link: str, to: str) -> None:
    """A datagram from the DHCPv6 server port to the client port of `to`."""
    _run(cloud, vm, f'echo advertise | nc.openbsd -u -w 1 -p 547 "{to}%{link}" 546; true')


def test_a_firewall_rule_opens_a_port_to_outside_the_network_and_rule_changes_never_open_all(
    cloud: Cloud,
) -> None:
    here, _ = _neighbours(cloud)
    address = _nic(cloud, here, "blue")["address"]
    assert not _reaches_ssh(cloud, OUTSIDER, address)

    # Rules for other ports come and go while the outsider keeps knocking on 22.
    probes = 20
    knock = (
        f"i=0; while [ $i -lt {probes} ]; do "
        f"echo | nc -w 1 {address} 22 | grep -q {SSH_BANNER} && echo OPEN; "
        "i=$((i+1)); done; echo DONE"
    )
    knocked: list[str] = []
    knocker = threading.Thread(target=lambda: knocked.append(_run(cloud, OUTSIDER, knock)))
    knocker.start()
    while knocker.is_alive():
        rule = cloud.cli_json(
            "firewall-rule", "add", "--network", "blue", "--proto", "tcp", "--port", "8000-8100"
        )
        checked(cloud.cli("firewall-rule", "rm", rule["id"]))
    knocker.join()
    assert knocked and knocked[0].strip().endswith("DONE")
    assert "OPEN" not in knocked[0]

    rule = cloud.cli_json(
        "firewall-rule", "add", "--vm", here, "--proto", "tcp", "--port", "22", "--source", "::/0"
    )
    wait_until(
        f"{OUTSIDER} reaches {here}'s SSH",
        lambda: _reaches_ssh(cloud, OUTSIDER, address),
        SETTLE_SECONDS,
    )
    checked(cloud.cli("firewall-rule", "rm", rule["id"]))
    wait_until(
        f"{here}'s SSH is closed again",
        lambda: not _reaches_ssh(cloud, OUTSIDER, address),
        SETTLE_SECONDS,
    )


def test_a_nic_is_attached_to_and_detached_from_a_running_vm(cloud: Cloud) -> None:
    made = cloud.cli_json("network", "create", "extra")
    vm = cloud.cli_json("vm", "nic", "add", "a1", "extra")
    (nic,) = [nic for nic in vm["nics"] if nic["network_name"] == "extra"]
    wait_until(
        "a1 configures its new NIC's address",
        lambda: nic["address"] in _run(cloud, "a1", "ip -6 addr show scope global"),
        SETTLE_SECONDS,
    )
    _wait_pings(cloud, "a1", made["gateway"])
    host = _host(cloud, "a1")
    tap = _tap_of(vm["id"], nic["number"])
    assert {tap, f"nb{made['id'][-12:]}", f"nx{made['id'][-12:]}"} <= set(host.links())

    checked(cloud.cli("vm", "nic", "rm", "a1", "extra"))
    wait_until(
        "a1's NIC is gone from the guest",
        lambda: nic["mac"] not in _run(cloud, "a1", "cat /sys/class/net/eth*/address"),
        SETTLE_SECONDS,
    )
    wait_until("its tap is gone from the host", lambda: tap not in host.links(), SETTLE_SECONDS)
    # a1 was the network's only VM: its bridge and VXLAN device went with the NIC.
    assert not {f"nb{made['id'][-12:]}", f"nx{made['id'][-12:]}"} & set(host.links())
    checked(cloud.cli("network", "delete", "extra", "--yes"))


def _has_no_agent_links(host: Host) -> bool:
    return not [link for link in host.links() if link.startswith(AGENTS)]


def test_deleting_everything_leaves_no_bridge_vxlan_fdb_entry_table_or_address(
    cloud: Cloud,
) -> None:
    refused = cloud.cli("network", "delete", "blue", "--yes")
    assert refused.returncode == 1
    assert "a1" in refused.stderr

    for name in SPREAD:
        checked(cloud.cli("vm", "delete", name, "--yes", "--wait"))
    checked(cloud.cli("vm", "delete", OUTSIDER, "--yes", "--wait", operator=True))
    for network in ("blue", "green", "plain"):
        checked(cloud.cli("network", "delete", network, "--yes"))
    checked(cloud.cli("network", "delete", "red", "--yes", operator=True))
    assert cloud.cli_json("network", "list") == []

    for host in cloud.hosts.values():
        wait_until(
            f"{host.name} has no bridge, VXLAN or tap",
            partial(_has_no_agent_links, host),
            SETTLE_SECONDS,
        )
        fdb = cloud.exec_in(host, "bridge", "fdb", "show").stdout
        assert " dst " not in fdb
        tables = cloud.exec_in(host, "nft", "list", "tables")
        assert (tables.returncode, tables.stdout.strip()) == (0, "")
        addresses = cloud.exec_in(host, "ip", "-6", "-o", "addr", "show", "scope", "global")
        assert [line for line in addresses.stdout.splitlines() if "ul0" not in line] == []
