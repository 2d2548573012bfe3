"""The tail of each VM's serial console, in the status only when it grew.

A tail counts as sent once the status that carried it reached the control plane
(`delivered`); until then every status carries it again, so a lost POST loses nothing.
VMs are converged in threads of their own, each touching only its own entries.
"""

from __future__ import annotations

from nubis.agent.qemu.paths import VmPaths
from nubis.protocol import CONSOLE_TAIL_BYTES


class ConsoleTails:
    def __init__(self) -> None:
        self._sent: dict[str, int] = {}
        """Each VM's console size as the control plane last got it."""
        self._pending: dict[str, int] = {}
        """Each VM's console size as the status on its way has it."""

    def tail(self, paths: VmPaths) -> str | None:
        """The console's tail if it grew since the control plane last got it."""
        try:
            size = paths.serial_log.stat().st_size
        except FileNotFoundError:
            return None
        if self._sent.get(paths.vm_id) == size:
            return None
        with paths.serial_log.open("rb") as log_file:
            log_file.seek(max(0, size - CONSOLE_TAIL_BYTES))
            tail = log_file.read(CONSOLE_TAIL_BYTES)
        self._pending[paths.vm_id] = size
        return tail.decode(errors="replace")

    def delivered(self) -> None:
        """The last status reached the control plane: its tails need no resend."""
        self._sent.update(self._pending)
        self._pending.clear()

    def forget(self, vm_id: str) -> None:
        self._sent.pop(vm_id, None)
        self._pending.pop(vm_id, None)
