"""QMP, synchronously: each command is one short connection with a time limit.

A QMP socket serves one client at a time, and a VM may outlive any number of agents,
so nothing stays connected: a command connects, negotiates, runs and disconnects.
That also makes re-attaching to a VM after an agent restart nothing at all.

`qemu.qmp` is asyncio-based; each command runs in an event loop of its own
(`asyncio.run`), so it must not be called from a coroutine. Its synchronous
`legacy.QEMUMonitorProtocol` is not used: it installs an event loop on the calling
thread and has no time limit on connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path

from qemu.qmp import ExecInterruptedError, ExecuteError, QMPClient, QMPError

from nubis.agent.qemu import QemuError

TIMEOUT = 5.0


class MonitorError(QemuError):
    """QMP did not answer in time, could not be reached, or refused the command."""


class CommandRefused(MonitorError):
    """QEMU answered the command with an error; `reason` is QEMU's own words."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Monitor:
    """The QMP socket of one VM. Holds no connection; every call makes its own."""

    def __init__(self, socket: Path, timeout: float = TIMEOUT) -> None:
        self.socket = socket
        self.timeout = timeout

    def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> object:
        """Run one QMP command and return what it returned."""
        try:
            return asyncio.run(asyncio.wait_for(self._execute(command, arguments), self.timeout))
        except TimeoutError:
            raise MonitorError(
                f"QMP at {self.socket} did not answer {command} within {self.timeout:g} s"
            ) from None
        except ExecuteError as error:
            raise CommandRefused(
                f"QMP at {self.socket} refused {command}: {error}", str(error)
            ) from error
        except (QMPError, OSError) as error:
            raise MonitorError(f"QMP at {self.socket} failed on {command}: {error}") from error

    async def _execute(self, command: str, arguments: Mapping[str, object] | None) -> object:
        client = QMPClient(f"qmp:{self.socket.parent.name}")
        await client.connect(str(self.socket))
        try:
            return await client.execute(command, arguments)
        finally:
            # The server may already have hung up (after `quit`): nothing to tidy.
            with contextlib.suppress(QMPError, OSError, EOFError):
                await client.disconnect()

    def status(self) -> str:
        """QEMU's run state: `running`, `paused`, `shutdown`, `prelaunch`, ..."""
        answer = self.execute("query-status")
        status = answer.get("status") if isinstance(answer, dict) else None
        if not isinstance(status, str):
            raise MonitorError(f"QMP at {self.socket} answered query-status with {answer!r}")
        return status

    def powerdown(self) -> None:
        """Press the ACPI power button; the guest decides what to do (and when)."""
        self.execute("system_powerdown")

    def reset(self) -> None:
        """Reset the machine at once, like its reset button (the guest is not asked)."""
        self.execute("system_reset")

    def quit(self) -> None:
        """End QEMU now; the guest is not asked, QEMU's own buffers are flushed."""
        try:
            self.execute("quit")
        except MonitorError as error:
            # QEMU may close the socket before its answer has been read: it quit.
            if not isinstance(error.__cause__, ExecInterruptedError):
                raise
