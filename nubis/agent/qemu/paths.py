"""Where one VM's files live: `<root>/<vm_id>/`, every name fixed, nothing else there."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from nubis.agent.qemu import QemuError

# sun_path in struct sockaddr_un is 108 bytes on Linux, one of them the final NUL.
SOCKET_PATH_MAX = 107

# A VM id becomes a directory name and part of QEMU options: no separators, no
# dots first (no `..`), no commas (QEMU's option separator).
_VM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class VmPaths:
    """The files of one VM. Build it with `VmPaths.of`, which checks the names."""

    vm_id: str
    dir: Path

    @classmethod
    def of(cls, root: Path, vm_id: str) -> VmPaths:
        """The paths of `vm_id` under `root`.

        The directory is made absolute: QEMU changes to `/` when it daemonizes and
        later removes its pidfile and sockets by these names.
        """
        if not _VM_ID.match(vm_id):
            raise QemuError(f"{vm_id!r} cannot name a VM directory")
        paths = cls(vm_id, Path(os.path.abspath(root)) / vm_id)
        for socket in paths.sockets:
            length = len(os.fsencode(socket))
            if length > SOCKET_PATH_MAX:
                raise QemuError(
                    f"the unix socket path {socket} is {length} bytes, over the "
                    f"{SOCKET_PATH_MAX} a socket address holds: choose a shorter "
                    "VM directory root"
                )
        return paths

    @property
    def disk(self) -> Path:
        return self.dir / "disk.qcow2"

    @property
    def seed(self) -> Path:
        """The cloud-init NoCloud seed (a FAT image labelled `cidata`)."""
        return self.dir / "seed.img"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def serial_log(self) -> Path:
        """Everything the guest wrote to its serial console, across restarts."""
        return self.dir / "serial.log"

    @property
    def serial_socket(self) -> Path:
        """The serial console, live (one client at a time)."""
        return self.dir / "serial.sock"

    @property
    def vnc(self) -> Path:
        return self.dir / "vnc.sock"

    @property
    def unplugging(self) -> Path:
        """The NICs QEMU was asked to let go of and may still have (see `hotplug`)."""
        return self.dir / "unplugging"

    @property
    def sockets(self) -> tuple[Path, ...]:
        return (self.qmp, self.serial_socket, self.vnc)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` by a file holding `text`, never leaving half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def vm_ids(root: Path) -> list[str]:
    """The VMs that have a directory under `root`, sorted: what this host holds."""
    if not root.is_dir():
        return []
    return sorted(
        entry.name for entry in root.iterdir() if entry.is_dir() and _VM_ID.match(entry.name)
    )
