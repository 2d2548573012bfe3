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
- `-sandbox`: seccomp, minus what `-daemonize` needs: it forks (so `spawn` cannot be
  denied) and it calls setsid (which `elevateprivileges=deny` kills, silently).
"""

from __future__ import annotations

from nubis.agent.qemu.paths import VmPaths
from nubis.protocol import VmSpec

QEMU = "qemu-system-x86_64"
MACHINE = "q35"
ACCELERATIONS = ("kvm", "tcg")
MIB = 1024 * 1024


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
    for index, nic in enumerate(spec.nics):
        # vhost-net moves packets in the kernel; it needs KVM's irqfd/ioeventfd.
        vhost = "on" if kvm else "off"
        command += [
            "-netdev",
            f"tap,id=net{index},ifname={nic.tap},script=no,downscript=no,vhost={vhost}",
            "-device",
            f"virtio-net-pci,netdev=net{index},id=nic{index},mac={nic.mac}",
        ]
    if sandbox:
        command += ["-sandbox", "on,obsolete=deny,resourcecontrol=deny"]
    return command


def memory_mib(memory_bytes: int) -> int:
    """`-m` takes MiB; a size between two is rounded up, so a guest never gets less."""
    return -(-memory_bytes // MIB)


def _value(path: object) -> str:
    """A path as a QEMU option value: a comma in it is written twice."""
    return str(path).replace(",", ",,")
