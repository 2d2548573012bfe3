"""`nubis network …`, `nubis vm nic …` and `nubis firewall-rule …` as people use them:
the real `nubis` command against a real `nubis api` over each store, with a host whose
agent the test plays (see test_vm_cli.py)."""

from __future__ import annotations

import ipaddress

import pytest

from tests.integration.cli.test_user_cli import _row_of, refused, succeeded, together
from tests.integration.cli.test_vm_cli import Tenant
from tests.integration.cli.test_vm_cli import tenant as tenant  # noqa: PLC0414 (a fixture)

pytestmark = pytest.mark.slow


def test_a_network_is_created_listed_shown_and_deleted(tenant: Tenant) -> None:
    made = succeeded(tenant.run("network", "create", "back", "--location", tenant.location))
    plain = tenant.run(
        "network", "create", "plain", "--ipam", "none", "--location", tenant.location, "--json"
    ).json()

    listed, as_json, shown = together(
        tenant.start("network", "list"),
        tenant.start("network", "list", "--json"),
        tenant.start("network", "show", "back", "--json"),
    )

    back = shown.json()
    assert made.stdout == (
        f"Created network back ({back['id']}): ipam auto, VNI {back['vni']}, "
        f"{back['prefix']}, in {tenant.location}.\n"
    )
    assert ipaddress.IPv6Network(back["prefix"]).prefixlen == 64
    assert (plain["ipam"], plain["prefix"]) == ("none", None)
    assert [n["name"] for n in as_json.json()] == ["back", "plain"]
    text = succeeded(listed).stdout
    assert _row_of(text, "back", back["id"], "auto", str(back["vni"]), back["prefix"])
    deleted = succeeded(tenant.run("network", "delete", "plain", "--yes"))
    assert deleted.stdout == "Deleted network plain.\n"
    refused(tenant.run("network", "show", "plain"), "no network 'plain'")


def test_a_vm_joins_networks_at_create_and_by_nic_add_and_leaves_by_nic_rm(
    tenant: Tenant,
) -> None:
    for name in ("back", "front"):
        succeeded(tenant.run("network", "create", name, "--location", tenant.location))
    vm = tenant.create("web1", "--network", "back", "--wait", "--json").json()
    assert [(n["number"], n["network_name"]) for n in vm["nics"]] == [(0, None), (1, "back")]

    added = succeeded(tenant.run("vm", "nic", "add", "web1", "front"))

    front = tenant.run("vm", "nic", "list", "web1", "--json").json()[2]
    assert added.stdout == (
        f"VM web1 has NIC 2 in network front ({front['mac']}, {front['address']}).\n"
    )
    shown = succeeded(tenant.run("vm", "show", "web1")).stdout
    assert _row_of(shown, "1", "back", vm["nics"][1]["mac"], vm["nics"][1]["address"])
    assert _row_of(shown, "2", "front", front["mac"], front["address"])
    assert _row_of(shown, "0", "host", vm["nics"][0]["mac"], vm["nics"][0]["address"])
    refused(
        tenant.run("network", "delete", "front"),
        "network front has NICs of VMs web1: remove them first",
    )
    refused(
        tenant.run("vm", "nic", "add", "web1", "front"),
        "VM web1 has a NIC in network front already",
    )
    removed = succeeded(tenant.run("vm", "nic", "rm", "web1", "front"))
    assert removed.stdout == "Removed VM web1's NIC in network front.\n"
    refused(tenant.run("vm", "nic", "rm", "web1", "front"), "VM web1 has no NIC in network front")
    succeeded(tenant.run("network", "delete", "front"))


def test_firewall_rules_are_added_listed_and_removed(tenant: Tenant) -> None:
    succeeded(tenant.run("network", "create", "back", "--location", tenant.location))
    succeeded(tenant.create("web1", "--network", "back"))

    ssh = succeeded(tenant.run("firewall-rule", "add", "--vm", "web1", "--proto", "tcp",
                               "--port", "22"))  # fmt: skip
    web = tenant.run(
        "firewall-rule", "add", "--network", "back", "--proto", "tcp", "--port", "8000-8100",
        "--source", "2001:db8::/32", "--json",
    ).json()  # fmt: skip

    rules = tenant.run("firewall-rule", "list", "--json").json()
    assert [r["id"] for r in rules][1] == web["id"]
    first = rules[0]
    assert ssh.stdout == f"Added rule {first['id']}: tcp port 22 from ::/0 to VM web1.\n"
    listed = succeeded(tenant.run("firewall-rule", "list")).stdout
    assert _row_of(listed, first["id"], "vm web1", "tcp", "22", "::/0")
    assert _row_of(listed, web["id"], "network back", "tcp", "8000-8100", "2001:db8::/32")
    by_network = tenant.run("firewall-rule", "list", "--network", "back", "--json").json()
    assert [r["id"] for r in by_network] == [web["id"]]
    removed = succeeded(tenant.run("firewall-rule", "rm", first["id"]))
    assert removed.stdout == f"Removed firewall rule {first['id']}.\n"
    assert [r["id"] for r in tenant.run("firewall-rule", "list", "--json").json()] == [web["id"]]


def test_bad_rules_and_networks_are_refused_with_the_reason(tenant: Tenant) -> None:
    succeeded(tenant.run("network", "create", "back", "--location", tenant.location))

    v4, ports, neither, both, ipam = together(
        tenant.start("firewall-rule", "add", "--network", "back", "--proto", "tcp",
                     "--source", "10.0.0.0/8"),
        tenant.start("firewall-rule", "add", "--network", "back", "--proto", "icmp",
                     "--port", "22"),
        tenant.start("firewall-rule", "add", "--proto", "tcp"),
        tenant.start("firewall-rule", "add", "--vm", "web1", "--network", "back",
                     "--proto", "tcp"),
        tenant.start("network", "create", "x", "--ipam", "dhcp"),
    )  # fmt: skip

    refused(
        v4,
        "the rule is not valid: source: 10.0.0.0/8 is IPv4: firewall rules are IPv6 "
        "(::/0 is everyone)",
    )
    refused(ports, "the rule is not valid: port: only tcp and udp rules have ports")
    refused(neither, "give --vm or --network (one of them)")
    refused(both, "give --vm or --network (one of them)")
    assert ipam.returncode == 2 and "dhcp" in ipam.stderr, ipam
