"""QEMU on this host: one daemonized process per VM, found again from its files.

    paths.py    where a VM's files live (disk, seed, pidfile, sockets, console log)
    argv.py     the qemu-system-x86_64 command line, as data
    monitor.py  QMP, one short connection per command
    process.py  start, find, stop, reboot and kill a VM's QEMU
    hotplug.py  make a running VM's project NICs those of its spec

The agent keeps nothing in memory about a VM: everything it needs to find a running
QEMU again (after its own restart) is in the VM's directory.

Errors:

    QemuError            something about a VM's QEMU could not be done; says what and why
    └── MonitorError     QMP did not answer, or refused a command
        └── CommandRefused   QEMU answered a command with an error (its words in `reason`)
"""

from __future__ import annotations


class QemuError(RuntimeError):
    """A VM's QEMU could not be started, reached or stopped; the message says why."""
