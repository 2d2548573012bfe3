"""The QEMU command line, read as QEMU would: option by option."""

from __future__ import annotations

from pathlib import Path

import pytest

from nubis.agent.qemu.argv import QEMU, argv, memory_mib, netdev, nic_device
from nubis.agent.qemu.paths import VmPaths
from tests.unit.agent.vm_specs import MIB, nic, vm_spec

PATHS = VmPaths.of(Path("/var/lib/nubis/vms"), vm_spec().id)


def values(command: list[str], option: str) -> list[str]:
    """What follows each occurrence of `option`."""
    return [command[i + 1] for i, arg in enumerate(command[:-1]) if arg == option]


def value(command: list[str], option: str) -> str:
    (only,) = values(command, option)
    return only


def keys(option_value: str) -> dict[str, str]:
    """`a,b=c,d=e` as {"": a, "b": c, "d": e}."""
    first, *rest = option_value.split(",")
    return {"": first} | dict(part.split("=", 1) for part in rest)


def chardev(command: list[str], chardev_id: str) -> dict[str, str]:
    (found,) = [keys(v) for v in values(command, "-chardev") if keys(v).get("id") == chardev_id]
    return found


def test_the_command_runs_qemu_named_after_the_vm() -> None:
    command = argv(vm_spec(), PATHS, "tcg")
    assert command[0] == QEMU
    assert value(command, "-name") == f"guest={vm_spec().id}"


def test_nothing_but_what_is_asked_for_is_in_the_machine() -> None:
    command = argv(vm_spec(), PATHS, "tcg")
    assert "-nodefaults" in command
    assert "-no-user-config" in command
    assert value(command, "-machine") == "q35"


def test_tcg_emulates_the_richest_cpu_it_can() -> None:
    command = argv(vm_spec(), PATHS, "tcg")
    assert value(command, "-accel") == "tcg"
    assert value(command, "-cpu") == "max"


def test_kvm_passes_the_host_cpu_through() -> None:
    command = argv(vm_spec(), PATHS, "kvm")
    assert value(command, "-accel") == "kvm"
    assert value(command, "-cpu") == "host"


def test_an_unknown_acceleration_is_refused() -> None:
    with pytest.raises(ValueError, match="acceleration"):
        argv(vm_spec(), PATHS, "hvf")


def test_the_vm_gets_its_cores_in_one_socket() -> None:
    command = argv(vm_spec(cores=3), PATHS, "tcg")
    assert keys(value(command, "-smp")) == {
        "": "cpus=3",
        "sockets": "1",
        "cores": "3",
        "threads": "1",
    }


def test_memory_is_given_in_mib() -> None:
    assert value(argv(vm_spec(memory_bytes=512 * MIB), PATHS, "tcg"), "-m") == "512"


@pytest.mark.parametrize(("memory_bytes", "mib"), [(MIB, 1), (MIB + 1, 2), (500_000_000, 477)])
def test_memory_between_two_mib_is_rounded_up(memory_bytes: int, mib: int) -> None:
    assert memory_mib(memory_bytes) == mib


def test_qemu_runs_daemonized_with_the_vms_pidfile() -> None:
    command = argv(vm_spec(), PATHS, "tcg")
    assert "-daemonize" in command
    assert value(command, "-pidfile") == str(PATHS.pidfile)


def test_qmp_listens_on_the_vms_socket_without_waiting_for_a_client() -> None:
    command = argv(vm_spec(), PATHS, "tcg")
    qmp = chardev(command, "qmp")
    assert qmp[""] == "socket"
    assert qmp["path"] == str(PATHS.qmp)
    assert (qmp["server"], qmp["wait"]) == ("on", "off")
    assert value(command, "-mon") == "chardev=qmp,mode=control"


def test_the_serial_console_goes_to_a_log_and_a_socket() -> None:
    command = argv(vm_spec(), PATHS, "tcg")
    serial = chardev(command, "serial0")
    assert serial["path"] == str(PATHS.serial_socket)
    assert (serial["server"], serial["wait"]) == ("on", "off")
    assert serial["logfile"] == str(PATHS.serial_log)
    # The log keeps the console of earlier boots.
    assert serial["logappend"] == "on"
    assert value(command, "-serial") == "chardev:serial0"


def test_vnc_listens_on_a_unix_socket_only() -> None:
    command = argv(vm_spec(), PATHS, "tcg")
    assert value(command, "-vnc") == f"unix:{PATHS.vnc}"
    assert value(command, "-display") == "none"


def test_the_disk_is_the_vms_qcow2_on_virtio_and_boots_first() -> None:
    command = argv(vm_spec(), PATHS, "tcg")
    drives = {keys(v)["id"]: keys(v) for v in values(command, "-drive")}
    disk = drives["disk0"]
    assert disk[""] == f"file={PATHS.disk}"
    assert (disk["if"], disk["format"]) == ("none", "qcow2")
    assert (disk["cache"], disk["aio"]) == ("none", "native")
    assert disk["discard"] == "unmap"
    assert "virtio-blk-pci,drive=disk0,bootindex=0" in values(command, "-device")


def test_the_seed_is_a_read_only_raw_virtio_disk() -> None:
    command = argv(vm_spec(), PATHS, "tcg")
    drives = {keys(v)["id"]: keys(v) for v in values(command, "-drive")}
    seed = drives["seed0"]
    assert seed[""] == f"file={PATHS.seed}"
    assert (seed["format"], seed["readonly"]) == ("raw", "on")
    assert "virtio-blk-pci,drive=seed0" in values(command, "-device")


def test_a_vm_without_nics_has_no_network_device() -> None:
    command = argv(vm_spec(nics=[]), PATHS, "tcg")
    assert "-netdev" not in command
    assert not [d for d in values(command, "-device") if d.startswith("virtio-net")]


def test_each_nic_is_a_virtio_device_on_its_tap_with_its_mac() -> None:
    nics = [nic(0), nic(1)]
    command = argv(vm_spec(nics=nics), PATHS, "tcg")
    netdevs = [keys(v) for v in values(command, "-netdev")]
    devices = [keys(v) for v in values(command, "-device") if v.startswith("virtio-net-pci")]
    assert [n["ifname"] for n in netdevs] == [n.tap for n in nics]
    assert all(n[""] == "tap" for n in netdevs)
    # The agent makes and removes the taps; QEMU must run no scripts on them.
    assert all((n["script"], n["downscript"]) == ("no", "no") for n in netdevs)
    assert [d["mac"] for d in devices] == [n.mac for n in nics]
    assert [d["netdev"] for d in devices] == [n["id"] for n in netdevs]


def test_vhost_net_is_used_only_under_kvm() -> None:
    for acceleration, vhost in [("kvm", "on"), ("tcg", "off")]:
        command = argv(vm_spec(nics=[nic(0)]), PATHS, acceleration)
        assert keys(value(command, "-netdev"))["vhost"] == vhost


def test_qemu_exits_when_the_guest_powers_off() -> None:
    # A stopped VM is a VM without a process.
    assert "-no-shutdown" not in argv(vm_spec(), PATHS, "tcg")


def test_the_sandbox_allows_only_what_daemonizing_needs() -> None:
    sandbox = keys(value(argv(vm_spec(), PATHS, "tcg"), "-sandbox"))
    assert sandbox[""] == "on"
    assert sandbox["obsolete"] == "deny"
    # -daemonize forks and calls setsid: denying either kills QEMU as it starts.
    assert "spawn" not in sandbox
    assert "elevateprivileges" not in sandbox


def test_the_sandbox_can_be_left_out() -> None:
    assert "-sandbox" not in argv(vm_spec(), PATHS, "tcg", sandbox=False)


def test_a_comma_in_a_path_is_escaped_for_qemu() -> None:
    paths = VmPaths.of(Path("/srv/a,b"), vm_spec().id)
    command = argv(vm_spec(), paths, "tcg")
    escaped = f"/srv/a,,b/{vm_spec().id}"
    assert f"socket,id=qmp,path={escaped}/qmp.sock,server=on,wait=off" in command
    assert value(command, "-vnc") == f"unix:{escaped}/vnc.sock"
    # -pidfile takes a plain file name, not an option list.
    assert value(command, "-pidfile") == str(paths.pidfile)


def _nic_devices(command: list[str]) -> dict[str, dict[str, str]]:
    found = [keys(v) for v in values(command, "-device") if v.startswith("virtio-net-pci")]
    return {device["id"]: device for device in found}


def test_every_vm_has_a_spare_root_port_for_each_project_nic_number() -> None:
    ports = [keys(v) for v in values(argv(vm_spec(), PATHS, "tcg"), "-device")]
    ports = [port for port in ports if port[""] == "pcie-root-port"]
    assert [port["id"] for port in ports] == [f"port{n}" for n in range(1, 16)]
    assert all(port["bus"] == "pcie.0" for port in ports)
    assert len({port["chassis"] for port in ports}) == 15
    addresses = [port["addr"] for port in ports]
    assert len(set(addresses)) == 15
    # Two slots of the root bus, eight functions each at most.
    assert {address.split(".")[0] for address in addresses} == {"0x10", "0x11"}
    assert [port.get("multifunction") for port in ports if port["addr"].endswith(".0")] == [
        "on",
        "on",
    ]
    # A virtio device behind a PCIe port needs no I/O space; 15 reservations exhaust it.
    assert all(port["io-reserve"] == "0" for port in ports)


def test_a_project_nic_sits_on_the_root_port_of_its_number_from_boot_on() -> None:
    nics = [nic(0), nic(3), nic(1)]
    command = argv(vm_spec(nics=nics), PATHS, "tcg")
    devices = _nic_devices(command)
    assert sorted(devices) == ["nic0", "nic1", "nic3"]
    assert "bus" not in devices["nic0"]
    assert devices["nic1"]["bus"] == "port1" and devices["nic3"]["bus"] == "port3"
    assert devices["nic3"]["netdev"] == "net3" and devices["nic3"]["mac"] == nic(3).mac
    netdevs = {keys(v)["id"]: keys(v) for v in values(command, "-netdev")}
    assert netdevs["net3"]["ifname"] == nic(3).tap


def test_a_nic_with_an_mtu_tells_the_guest_driver_with_host_mtu() -> None:
    nics = [nic(0), nic(1).model_copy(update={"mtu": 1430})]
    devices = _nic_devices(argv(vm_spec(nics=nics), PATHS, "tcg"))
    assert devices["nic1"]["host_mtu"] == "1430"
    assert "host_mtu" not in devices["nic0"]


def test_two_nics_with_one_number_are_refused() -> None:
    with pytest.raises(ValueError, match="repeat"):
        argv(vm_spec(nics=[nic(1), nic(1).model_copy(update={"tap": "ntother"})]), PATHS, "tcg")


def test_qmp_and_the_command_line_describe_a_nic_alike() -> None:
    mtu_nic = nic(2).model_copy(update={"mtu": 1430})
    device = nic_device(mtu_nic)
    assert device == {
        "driver": "virtio-net-pci",
        "netdev": "net2",
        "id": "nic2",
        "mac": mtu_nic.mac,
        "bus": "port2",
        "host_mtu": 1430,
    }
    assert netdev(mtu_nic, kvm=False)["vhost"] is False
    assert netdev(mtu_nic, kvm=True)["vhost"] is True
    command = argv(vm_spec(nics=[mtu_nic]), PATHS, "tcg")
    assert value(command, "-netdev") == (
        f"tap,id=net2,ifname={mtu_nic.tap},script=no,downscript=no,vhost=off"
    )
