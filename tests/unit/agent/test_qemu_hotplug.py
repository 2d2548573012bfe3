"""Project NICs plugged into and out of a running VM, against a stand-in for QEMU that
answers QMP as QEMU 7.2 does (the same words in its refusals)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from nubis.agent.qemu.hotplug import PERIPHERALS, _asked, converge, plan, present
from nubis.agent.qemu.monitor import CommandRefused
from nubis.agent.qemu.paths import VmPaths
from nubis.protocol import Nic
from tests.unit.agent.vm_specs import nic

READS = ["qom-list", "human-monitor-command"]


class FakeQemu:
    """The NIC devices and netdevs of one VM, changed by QMP commands. A device asked to
    go stays until the guest lets go of it (`guest_lets_go`)."""

    def __init__(self, nics: Iterable[Nic] = (), *, ports: bool = True) -> None:
        self.devices: dict[str, dict[str, str]] = {}
        self.netdevs: dict[str, str] = {}
        self.unplugging: set[str] = set()
        self.ports = {f"port{number}" for number in range(1, 16)} if ports else set()
        self.commands: list[str] = []
        for booted in nics:
            self.netdevs[f"net{booted.number}"] = booted.tap
            self.devices[f"nic{booted.number}"] = {
                "mac": booted.mac,
                "netdev": f"net{booted.number}",
            }

    def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> object:
        self.commands.append(command)
        args = {key: str(value) for key, value in (arguments or {}).items()}
        if command == "qom-list":
            assert args["path"] == PERIPHERALS
            names = ["type", *sorted(self.ports), *self.devices]
            return [{"name": name, "type": "child<x>"} for name in names]
        if command == "human-monitor-command":
            assert args["command-line"] == "info network"
            return self._info_network()
        if command == "netdev_add":
            self._refuse(args["id"] in self.netdevs, f"Duplicate ID '{args['id']}' for netdev")
            self.netdevs[args["id"]] = args["ifname"]
        elif command == "device_add":
            self._refuse(args["bus"] not in self.ports, f"Bus '{args['bus']}' not found")
            self._refuse(args["id"] in self.devices, f"Duplicate device ID '{args['id']}'")
            in_use = {device["netdev"] for device in self.devices.values()}
            missing = args["netdev"] not in self.netdevs or args["netdev"] in in_use
            self._refuse(missing, f"Property 'virtio-net-pci.netdev' can't find value "
                                  f"'{args['netdev']}'")  # fmt: skip
            self.devices[args["id"]] = {"mac": args["mac"], "netdev": args["netdev"]}
        elif command == "device_del":
            self._refuse(args["id"] not in self.devices, f"Device '{args['id']}' not found")
            self._refuse(
                args["id"] in self.unplugging,
                f"Device {args['id']} is already in the process of unplug",
            )
            self.unplugging.add(args["id"])
        elif command == "netdev_del":
            self._refuse(args["id"] not in self.netdevs, f"Device '{args['id']}' not found")
            del self.netdevs[args["id"]]
        else:
            raise AssertionError(f"unexpected command {command}")
        return {}

    def _refuse(self, refused: bool, reason: str) -> None:
        if refused:
            raise CommandRefused(f"QMP refused: {reason}", reason)

    def _info_network(self) -> str:
        lines = []
        used = set()
        for name, device in self.devices.items():
            lines.append(f"{name}: index=0,type=nic,model=virtio-net-pci,macaddr={device['mac']}")
            if device["netdev"] in self.netdevs:
                used.add(device["netdev"])
                tap = self.netdevs[device["netdev"]]
                lines.append(
                    f" \\ {device['netdev']}: index=0,type=tap,ifname={tap},script=no,downscript=no"
                )
        for name, tap in self.netdevs.items():
            if name not in used:
                lines.append(f"{name}: index=0,type=tap,ifname={tap},script=no,downscript=no")
        return "".join(f"{line}\r\n" for line in lines)

    def guest_lets_go(self) -> None:
        for name in self.unplugging:
            del self.devices[name]
        self.unplugging.clear()

    def taken(self) -> list[str]:
        """The commands since the last call, reads left out."""
        steps = [
            command
            for command in self.commands
            if command not in READS and not command.startswith("remember")
        ]
        self.commands.clear()
        return steps


class Agent:
    """Passes of `sync_nics`, with the NICs asked to go kept between them (its file)."""

    def __init__(self, qemu: FakeQemu) -> None:
        self.qemu = qemu
        self.asked: frozenset[int] = frozenset()

    def remember(self, going: frozenset[int]) -> None:
        self.asked = going
        self.qemu.commands.append(f"remember {sorted(going)}")

    def sync(self, nics: list[Nic], *, kvm: bool = False) -> bool:
        going = converge(self.qemu, nics, kvm=kvm, asked=self.asked, remember=self.remember)
        return bool(going)


def test_a_missing_nic_is_plugged_into_its_port_with_its_tap_and_mac() -> None:
    qemu = FakeQemu([nic(0)])
    agent = Agent(qemu)
    assert agent.sync([nic(0), nic(2)]) is False
    assert qemu.taken() == ["netdev_add", "device_add"]
    assert qemu.netdevs["net2"] == nic(2).tap
    assert qemu.devices["nic2"] == {"mac": nic(2).mac, "netdev": "net2"}


def test_nics_that_are_there_already_are_left_alone() -> None:
    qemu = FakeQemu([nic(0), nic(1)])
    agent = Agent(qemu)
    assert agent.sync([nic(0), nic(1)]) is False
    assert qemu.commands == [*READS, "remember []"]


def test_nic_0_is_never_plugged_nor_unplugged() -> None:
    qemu = FakeQemu([nic(0)])
    agent = Agent(qemu)
    assert agent.sync([]) is False
    assert "nic0" in qemu.devices
    qemu = FakeQemu()
    agent = Agent(qemu)
    assert agent.sync([nic(0)]) is False
    assert qemu.taken() == []


def test_an_unplug_is_under_way_until_the_guest_lets_go_then_its_netdev_goes() -> None:
    qemu = FakeQemu([nic(0), nic(1)])
    agent = Agent(qemu)
    assert agent.sync([nic(0)]) is True
    assert qemu.taken() == ["device_del"]
    # Asked again while the guest has not answered yet: still under way, no error.
    assert agent.sync([nic(0)]) is True
    qemu.guest_lets_go()
    assert agent.sync([nic(0)]) is False
    assert qemu.taken() == ["device_del", "netdev_del"]
    assert sorted(qemu.devices) == ["nic0"] and sorted(qemu.netdevs) == ["net0"]
    assert agent.sync([nic(0)]) is False
    assert qemu.taken() == []


def test_a_nic_wanted_again_before_its_device_is_gone_is_plugged_in_anew() -> None:
    qemu = FakeQemu([nic(0), nic(1)])
    agent = Agent(qemu)
    assert agent.sync([nic(0)]) is True
    # Its device is still there, but on its way out: not the NIC wanted now.
    assert agent.sync([nic(0), nic(1)]) is True
    qemu.guest_lets_go()
    qemu.taken()
    assert agent.sync([nic(0), nic(1)]) is False
    assert qemu.taken() == ["device_add"]
    assert sorted(qemu.devices) == ["nic0", "nic1"]


def test_the_nics_asked_to_go_are_remembered_before_they_are_asked() -> None:
    qemu = FakeQemu([nic(0), nic(1), nic(2)])
    agent = Agent(qemu)
    agent.sync([nic(0)])
    assert qemu.commands[len(READS) :] == ["remember [1, 2]", "device_del", "device_del"]


def test_an_agent_that_crashed_after_netdev_add_only_adds_the_device() -> None:
    qemu = FakeQemu([nic(0)])
    agent = Agent(qemu)
    qemu.execute("netdev_add", {"type": "tap", "id": "net1", "ifname": nic(1).tap})
    qemu.taken()
    assert agent.sync([nic(0), nic(1)]) is False
    assert qemu.taken() == ["device_add"]
    assert qemu.devices["nic1"]["netdev"] == "net1"


@pytest.mark.parametrize("kvm", [False, True])
def test_vhost_net_is_asked_for_only_under_kvm(kvm: bool) -> None:
    (add, _device) = plan([nic(1)], present([], ""), kvm=kvm).steps
    assert add.command == "netdev_add"
    assert add.arguments["vhost"] is kvm
    assert add.arguments["script"] == "no" and add.arguments["downscript"] == "no"


def test_a_number_given_to_another_nic_is_unplugged_then_plugged_in_anew() -> None:
    qemu = FakeQemu([nic(0), nic(1)])
    agent = Agent(qemu)
    other = nic(1).model_copy(update={"mac": "52:54:00:99:99:99", "tap": "ntother1"})
    assert agent.sync([nic(0), other]) is True
    assert qemu.taken() == ["device_del"]
    qemu.guest_lets_go()
    assert agent.sync([nic(0), other]) is False
    assert qemu.taken() == ["netdev_del", "netdev_add", "device_add"]
    assert qemu.devices["nic1"]["mac"] == other.mac
    assert qemu.netdevs["net1"] == "ntother1"


def test_each_step_taken_twice_is_no_error() -> None:
    # As if another pass (an agent before its crash) took each step just before.
    add = plan([nic(1)], present([], ""), kvm=False).steps
    qemu = FakeQemu([nic(0)])
    agent = Agent(qemu)
    for step in add:
        qemu.execute(step.command, step.arguments)
    for step in add:
        with pytest.raises(CommandRefused):
            qemu.execute(step.command, step.arguments)
    assert agent.sync([nic(0), nic(1)]) is False


def test_a_vm_started_without_spare_ports_says_so() -> None:
    qemu = FakeQemu([nic(0)], ports=False)
    agent = Agent(qemu)
    with pytest.raises(CommandRefused, match="Bus 'port1' not found"):
        agent.sync([nic(0), nic(1)])


def test_what_qemu_has_is_read_from_qom_list_and_info_network() -> None:
    # As QEMU 7.2 answered, with a netdev whose device is gone (net3).
    network = (
        "nic0: index=0,type=nic,model=virtio-net-pci,macaddr=56:a6:79:58:12:7f\r\n"
        " \\ net0: index=0,type=tap,ifname=nth6x0,script=no,downscript=no\r\n"
        "nic2: index=0,type=nic,model=virtio-net-pci,macaddr=0e:db:42:24:d6:35\r\n"
        " \\ net2: index=0,type=tap,ifname=nth6x2,script=no,downscript=no\r\n"
        "net3: index=0,type=tap,ifname=nth6x3,script=no,downscript=no\r\n"
    )
    peripherals = [
        {"name": "type", "type": "string"},
        {"name": "port1", "type": "child<pcie-root-port>"},
        {"name": "nic0", "type": "child<virtio-net-pci>"},
        {"name": "nic2", "type": "child<virtio-net-pci>"},
    ]
    have = present(peripherals, network)
    assert have.devices == {2: "0e:db:42:24:d6:35"}
    assert have.netdevs == {2: "nth6x2", 3: "nth6x3"}


def test_nics_asked_to_go_from_an_earlier_qemu_are_not_taken_for_this_one(tmp_path: Path) -> None:
    paths = VmPaths.of(tmp_path, "vm-1")
    paths.dir.mkdir()
    assert _asked(paths, 4242) == frozenset()
    paths.unplugging.write_text("4242 1 3\n")
    assert _asked(paths, 4242) == {1, 3}
    # The VM was restarted since: its new QEMU was asked nothing.
    assert _asked(paths, 5151) == frozenset()
    paths.unplugging.write_text("garbage")
    assert _asked(paths, 4242) == frozenset()
