"""radvd: announces a network's /64 on its bridge, so guests configure themselves (SLAAC).

One radvd per bridge, daemonized with its config, pidfile and log in the agent's state
dir, named after the bridge. It outlives the agent: a restarted agent finds it again by
its pidfile, and believes the pidfile only if /proc/<pid>/cmdline is that radvd with
that config, so a recycled pid is never taken for it (nor signalled).
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from nubis.protocol import HostNetwork, Network

BINARY = "radvd"
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Announcement:
    """What radvd announces on a bridge: a /64 for SLAAC, the link's MTU if set, and
    whether the host is the link's default router."""

    bridge: str
    prefix: str
    mtu: int | None = None
    default_router: bool = True

    def __post_init__(self) -> None:
        # The config is text for radvd: nothing but checked values may reach it.
        if not re.match(r"^nb[0-9a-z-]{1,13}$", self.bridge):
            raise ValueError(f"not a bridge name: {self.bridge!r}")
        if self.mtu is not None and not 1280 <= self.mtu <= 65535:
            raise ValueError(f"not an IPv6 link MTU: {self.mtu}")

    @classmethod
    def of(cls, network: HostNetwork | Network | Announcement) -> Announcement:
        """The announcement of the host network, or of a project network with a prefix."""
        if isinstance(network, Announcement):
            return network
        if isinstance(network, HostNetwork):
            return cls(network.bridge, network.prefix)
        if network.prefix is None:
            raise ValueError(f"network {network.id} has no prefix to announce")
        # A VM's default route is its host network's: a second one through a project
        # network would send packets from the host network's address out of a NIC whose
        # guard drops them. A project network's NIC routes by source (the guest's
        # business: the tiny guest does it from network_data.json).
        return cls(network.bridge, network.prefix, network.mtu, default_router=False)


def config(network: HostNetwork | Network | Announcement) -> str:
    """radvd.conf for the network's bridge.

    Short intervals so that a booting guest is configured within seconds (radvd also
    answers its router solicitation at once); RFC 4861 asks for
    MinRtrAdvInterval <= 0.75 * MaxRtrAdvInterval, which 3 and 10 keep. A project
    network's links are narrower than Ethernet's (VXLAN takes its share): the MTU is
    announced too, so that a guest sends no packet the segment cannot carry.
    """
    announcement = Announcement.of(network)
    prefix = ipaddress.IPv6Network(announcement.prefix, strict=True)
    if prefix.network_address.scope_id is not None:
        raise ValueError(f"not a prefix to announce: {announcement.prefix!r}")
    if prefix.prefixlen != 64:
        raise ValueError(f"SLAAC needs a /64, not {prefix}")
    mtu = "" if announcement.mtu is None else f"    AdvLinkMTU {int(announcement.mtu)};\n"
    if not announcement.default_router:
        mtu += "    AdvDefaultLifetime 0;\n"
    return f"""\
interface {announcement.bridge} {{
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 10;
{mtu}\
    prefix {prefix} {{
        AdvOnLink on;
        AdvAutonomous on;
    }};
}};
"""


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class Radvd:
    """The radvd of one bridge."""

    def __init__(self, state_dir: Path, bridge: str, binary: str = BINARY) -> None:
        self.state_dir = state_dir
        self.bridge = bridge
        self.binary = binary

    @property
    def config_path(self) -> Path:
        return self.state_dir / f"radvd-{self.bridge}.conf"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / f"radvd-{self.bridge}.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / f"radvd-{self.bridge}.log"

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--config",
            str(self.config_path),
            "--pidfile",
            str(self.pidfile),
            "--logmethod",
            "logfile",
            "--logfile",
            str(self.logfile),
        ]

    def _is_ours(self, pid: int) -> bool:
        argv = _cmdline(pid)
        return (
            bool(argv)
            and Path(argv[0]).name == Path(self.binary).name
            and str(self.config_path) in argv
        )

    def pid(self) -> int | None:
        """The pid of this bridge's radvd if it runs, else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 and self._is_ours(pid) else None

    def ensure(self, network: HostNetwork | Network | Announcement) -> bool:
        """Make radvd run with the network's config; True if it had to be (re)started."""
        announcement = Announcement.of(network)
        if announcement.bridge != self.bridge:
            raise ValueError(f"this is the radvd of {self.bridge}, not {announcement.bridge}")
        text = config(announcement)
        running = self.pid()
        current = self.config_path.read_text() if self.config_path.exists() else None
        if running is not None and current == text:
            return False
        if running is not None:
            self.stop()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # radvd refuses a config file that others may write to.
        partial = self.config_path.with_suffix(".partial")
        partial.write_text(text)
        partial.chmod(0o644)
        partial.replace(self.config_path)
        self._start()
        return True

    def _start(self) -> None:
        # A pidfile left by a radvd that died names a pid some other process may have
        # now; radvd would take that one for itself and refuse to start.
        self.pidfile.unlink(missing_ok=True)
        done = subprocess.run(
            self.argv(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while done.returncode == 0 and time.monotonic() < deadline:
            if self.pid() is not None:
                return
            time.sleep(0.05)
        log_tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
        raise RuntimeError(
            f"radvd for {self.bridge} did not start (exit {done.returncode}): "
            f"{done.stderr.strip()} {log_tail.strip()}"
        )

    def stop(self) -> bool:
        """Stop this bridge's radvd and forget its files; False if it was not running."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self._is_ours(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._is_ours(pid):
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        self.config_path.unlink(missing_ok=True)
        return pid is not None


def bridges(state_dir: Path) -> list[str]:
    """The bridges that have a radvd config in `state_dir` (running or not), so that the
    reconciler can stop those of bridges no longer desired."""
    return sorted(
        path.name.removeprefix("radvd-").removesuffix(".conf")
        for path in state_dir.glob("radvd-*.conf")
    )
