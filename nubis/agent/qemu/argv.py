"""The qemu-system-x86_64 command line of a VM, as data (nothing here runs anything).

Choices, and why:

- `-machine q35`: PCIe, and an ACPI power button a guest OS acts on. SeaBIOS on q35
  boots a syslinux FAT disk from virtio-blk under TCG (the tiny image does this).
- No `-no-shutdown`: when the guest powers off, QEMU exits. A stopped VM is a VM
  without a process, so "stopped" needs no second representation, and a guest that
  powers itself off is simply stopped.
- `-daemonize` with `-pidfile`: QEMU outlives the agent; the parent process exits only
  once the VM is set up, with a message on stderr if it could not be.
- Disks: `cache=none,aio=native` (O_DIRECT: no second copy of guest data in the host
  page cache; guest flushes reach the disk). It needs a filesystem with O_DIRECT,
  which tmpfs is not. `discard=unmap` and `detect-zeroes=unmap` keep overlays thin.
- Serial: one chardev socket with a logfile, so the console is kept in a log and
  can be attached to live; VNC only on a unix socket, never a TCP port.
- Every file is opened with its format given, never probed: the disk `format=qcow2`,
  the seed `format=raw`, and the base image under the disk as the qcow2 its overlay
  records (`disk.make_overlay` makes it with `-F qcow2`). A base image is one the
  control plane took (`nubis.images.verify`: no backing file, no external data file).
- `-sandbox`: seccomp, minus what `-daemonize` needs: it forks (so `spawn` cannot be
  denied: QEMU 7.2 with `-daemonize` and `spawn=deny` dies of SIGSYS at once) and it
  calls setsid (which `elevateprivileges=deny` kills, silently).
- No `-runas`: QEMU drops to the user only after opening its boot files (the tiny
  guest boots so, sandboxed, as `nobody`), but a NIC hot-plugged later (`netdev_add`
  of a tap by its name) is then refused (`could not open /dev/net/tun: Permission
  denied`, QEMU 7.2, measured), and so would be vhost-net. Running QEMU as its own
  user needs the agent to open the taps (and /dev/vhost-net) and hand QEMU the
  descriptors (QMP `getfd`, `netdev_add` with `fd`), which QEMU 7.2 takes from an
  unprivileged user.
- NICs: on q35 a device can be hot-plugged only into a PCIe root port, so every VM
  has one empty port per project NIC number (`port1` .. `port15`, as functions of two
  multifunction slots, so they take two of the 32 slots), and NIC `n` >= 1 sits on
  `port<n>` from boot on too: its device is `nic<n>` on netdev `net<n>` wherever it
  came from, and `hotplug.py` finds it by that name. NIC 0 (the host network's) is on
  the root bus and stays for the VM's life. The ports reserve no I/O space (a virtio
  device behind a PCIe port is modern, memory only; 15 ports of 4 KiB I/O each would
  exhaust the firmware's). `host_mtu` tells the guest's virtio-net driver its MTU.
"""

from __future__ import annotations

from nubis.agent.qemu.paths import VmPaths
from nubis.protocol import Nic, VmSpec

QEMU = "qemu-system-x86_64"
MACHINE = "q35"
ACCELERATIONS = ("kvm", "tcg")
MIB = 1024 * 1024
PORT_SLOTS = (0x10, 0x11)
"""The root bus slots whose functions are the root ports (8 functions each)."""
NIC_NUMBERS = range(1, 16)
"""The numbers of the NICs that may be hot-plugged: project network NICs."""


def port_id(number: int) -> str:
    """The PCIe root port that NIC `number` (>= 1) is plugged into."""
    return f"port{number}"


def device_id(number: int) -> str:
    return f"nic{number}"


def netdev_id(number: int) -> str:
    return f"net{number}"


def root_ports() -> list[str]:
    """`-device` values of the spare root ports, one per possible project NIC."""
    ports = []
    for number in NIC_NUMBERS:
        slot, function = PORT_SLOTS[(number - 1) // 8], (number - 1) % 8
        multifunction = ",multifunction=on" if function == 0 else ""
        ports.append(
            f"pcie-root-port,id={port_id(number)},bus=pcie.0,chassis={number},"
            f"addr={slot:#x}.{function}{multifunction},io-reserve=0"
        )
    return ports


def netdev(nic: Nic, kvm: bool) -> dict[str, str | int | bool]:
    """The tap backend of `nic`, as QMP's `netdev_add` takes it (`-netdev` says the same)."""
    return {
        "type": "tap",
        "id": netdev_id(nic.number),
        "ifname": nic.tap,
        # The agent makes and removes the taps; QEMU runs no scripts on them.
        "script": "no",
        "downscript": "no",
        # vhost-net moves packets in the kernel; it needs KVM's irqfd/ioeventfd.
        "vhost": kvm,
    }


def nic_device(nic: Nic) -> dict[str, str | int | bool]:
    """The virtio-net device of `nic`, as QMP's `device_add` takes it (and `-device`)."""
    device: dict[str, str | int | bool] = {
        "driver": "virtio-net-pci",
        "netdev": netdev_id(nic.number),
        "id": device_id(nic.number),
        "mac": nic.mac,
    }
    if nic.number != 0:
        device["bus"] = port_id(nic.number)
    if nic.mtu is not None:
        device["host_mtu"] = nic.mtu
    return device


def argv(spec: VmSpec, paths: VmPaths, acceleration: str, *, sandbox: bool = True) -> list[str]:
    """The command that runs `spec` from `paths`, under `kvm` or `tcg`."""
    if acceleration not in ACCELERATIONS:
        raise ValueError(f"acceleration must be one of {ACCELERATIONS}, not {acceleration!r}")
    kvm = acceleration == "kvm"
    command = [
        QEMU,
        "-name", f"guest={spec.id}",
        "-no-user-config",
        "-nodefaults",
        "-machine", MACHINE,
        "-accel", acceleration,
        # `host` is only meaningful under KVM; under TCG `max` emulates every feature
        # TCG can, which modern distributions (x86-64-v2 and up) expect.
        "-cpu", "host" if kvm else "max",
        "-smp", f"cpus={spec.cores},sockets=1,cores={spec.cores},threads=1",
        "-m", str(memory_mib(spec.memory_bytes)),
        "-daemonize",
        "-pidfile", str(paths.pidfile),
        "-chardev", f"socket,id=qmp,path={_value(paths.qmp)},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev",
        f"socket,id=serial0,path={_value(paths.serial_socket)},server=on,wait=off,"
        f"logfile={_value(paths.serial_log)},logappend=on",
        "-serial", "chardev:serial0",
        "-display", "none",
        "-vnc", f"unix:{_value(paths.vnc)}",
        "-device", "VGA",
        "-drive",
        f"file={_value(paths.disk)},if=none,id=disk0,format=qcow2,"
        "cache=none,aio=native,discard=unmap,detect-zeroes=unmap",
        "-device", "virtio-blk-pci,drive=disk0,bootindex=0",
        "-drive", f"file={_value(paths.seed)},if=none,id=seed0,format=raw,readonly=on",
        "-device", "virtio-blk-pci,drive=seed0",
        # Guests that make SSH host keys on first boot wait for entropy without it.
        "-object", "rng-random,id=rng0,filename=/dev/urandom",
        "-device", "virtio-rng-pci,rng=rng0",
    ]  # fmt: skip
    numbers = [nic.number for nic in spec.nics]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"the NIC numbers of {spec.id} repeat: {numbers}")
    for port in root_ports():
        command += ["-device", port]
    for nic in sorted(spec.nics, key=lambda nic: nic.number):
        command += ["-netdev", _option("type", netdev(nic, kvm))]
        command += ["-device", _option("driver", nic_device(nic))]
    if sandbox:
        command += ["-sandbox", "on,obsolete=deny,resourcecontrol=deny"]
    return command


def memory_mib(memory_bytes: int) -> int:
    """`-m` takes MiB; a size between two is rounded up, so a guest never gets less."""
    return -(-memory_bytes // MIB)


def _option(kind: str, values: dict[str, str | int | bool]) -> str:
    """QMP arguments as a command-line option: the value of `kind` first, without its
    key; booleans as `on`/`off`."""

    def text(value: str | int | bool) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        return _value(value)

    rest = (f"{key}={text(value)}" for key, value in values.items() if key != kind)
    return ",".join([text(values[kind]), *rest])


def _value(path: object) -> str:
    """A path as a QEMU option value: a comma in it is written twice."""
    return str(path).replace(",", ",,")
