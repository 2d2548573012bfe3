"""The tiny guest's own files, as text: its init, its /etc, its boot loader's config.

The init is a busybox shell script run as pid 1. It brings every NIC up and looks for
the metadata service on each in turn (the host network's NIC, the one on the root PCI
bus, first), by an IPv4 link-local address from the NIC's MAC and then by IPv6
link-local; it reads the hostname, the SSH keys and network_data.json from the
service, or else the hostname and keys from a NoCloud seed. It configures each NIC
from network_data.json, matched by MAC: a network of type `ipv6` (a `manual` one) gets
its address set and no router advertisements; any other gets SLAAC with EUI-64
addresses, which the control plane predicts from the MAC; a link without a network only
its link-local address. It runs dropbear on port 22, prints marker lines on the
console (`address ethN ADDR` per address, once the NIC has it), starts `mdev -d`,
which runs `/sbin/nubis-nic` when a NIC is hot-plugged or unplugged (it configures a
new NIC the same way, with network_data.json fetched anew), then hands pid 1 to
busybox init, which reaps orphans and powers off cleanly when acpid reports the ACPI
power button.

With `nubis.probe` on the kernel command line it only says that userspace was reached
and powers off: the acceleration probe boots that.

The scripts are the package's `scripts/*.sh` (checked by shellcheck in `make lint`):
templates whose `@KEY@`s are replaced by the values below when the image is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

MARKER = "nubis-tiny:"
READY_MARKER = f"{MARKER} ssh ready"
PROBE_ARG = "nubis.probe"
PROBE_MARKER = "nubis-probe: userspace"
KERNEL_FILE = "vmlinuz"
INITRD_FILE = "initrd.img"
MODULE_DIR = "lib/modules"
SEED_LABEL = "CIDATA"
METADATA_WAIT = 60
"""Seconds a guest without a seed keeps asking the metadata service: the host may
still be setting up its side of the link."""
METADATA_WAIT_WITH_SEED = 3
"""With a seed to fall back on, the metadata service gets only a moment."""
ADDRESS_WAIT = 15
"""Seconds the init waits for a router advertisement before saying ssh is ready."""
CONSOLE = "ttyS0"
BOOT_LABEL = "NUBIS-TINY"
"""The label of the image's own FAT disk (where the guest keeps its SSH host key)."""

NETWORK_FILE = "etc/nubis/network.sh"
SEED_FILE = "etc/nubis/seed.sh"
HOTPLUG_FILE = "sbin/nubis-nic"
POWER_BUTTON_FILE = "etc/acpi/PWRF/00000080"
RUN_DIR = "/run/nubis"
ROUTE_TABLE_BASE = 100
"""A project network NIC's routing table is this plus its interface index."""
MANUAL_ADDRESS_WAIT = 5
"""Seconds a manual address gets to pass duplicate address detection before it is
announced anyway."""

SCRIPTS = "scripts"
"""Where in this package the scripts are (shipped with it as data)."""

MDEV_CONF = f"""# mdev only runs the tiny guest's NIC handler; devtmpfs makes the device nodes.
SUBSYSTEM=net;eth[0-9]+ 0:0 600 ! */{HOTPLUG_FILE}
.* 0:0 600 !
"""


def _script(name: str, values: dict[str, str] | None = None) -> str:
    """The script `name` of the package's scripts/, its `@KEY@`s replaced by `values`."""
    template = resources.files("nubis.guestimage").joinpath(SCRIPTS, name).read_text()
    for key, value in (values or {}).items():
        template = template.replace(f"@{key}@", value)
    return template


def network_functions() -> str:
    """The shell functions that find, configure and announce NICs (at boot and on
    hot-plug): the guest's NETWORK_FILE."""
    return _script(
        "network.sh",
        {
            "RUN_DIR": RUN_DIR,
            "MARKER": MARKER,
            "ADDRESS_WAIT": str(ADDRESS_WAIT),
            "MANUAL_ADDRESS_WAIT": str(MANUAL_ADDRESS_WAIT),
            "ROUTE_TABLE_BASE": str(ROUTE_TABLE_BASE),
        },
    )


def seed_functions() -> str:
    """The shell functions that read the hostname and SSH keys from a NoCloud seed: the
    guest's SEED_FILE, sourced by the init."""
    return _script("seed.sh")


def init_script(
    modules: Sequence[str],
    *,
    metadata_wait: int = METADATA_WAIT,
    metadata_wait_with_seed: int = METADATA_WAIT_WITH_SEED,
) -> str:
    """The guest's /init, loading `modules` (names, in this order) from /lib/modules."""
    for module in modules:
        if not module.replace("_", "").isalnum():
            raise ValueError(f"{module!r} is not a kernel module name")
    values = {
        "PROBE_ARG": PROBE_ARG,
        "PROBE_MARKER": PROBE_MARKER,
        "MARKER": MARKER,
        "MODULES": " ".join(modules),
        "MODULE_DIR": MODULE_DIR,
        "SEED_LABEL": SEED_LABEL,
        "BOOT_LABEL": BOOT_LABEL,
        "METADATA_WAIT": str(metadata_wait),
        "METADATA_WAIT_WITH_SEED": str(metadata_wait_with_seed),
        "SEED_FILE": SEED_FILE,
        "NETWORK_FILE": NETWORK_FILE,
    }
    return _script("init.sh", values)


def etc_files() -> dict[str, str]:
    """The guest's configuration files and scripts by path (relative to /)."""
    return {
        NETWORK_FILE: network_functions(),
        SEED_FILE: seed_functions(),
        HOTPLUG_FILE: _script("nic.sh", {"NETWORK_FILE": NETWORK_FILE}),
        "etc/mdev.conf": MDEV_CONF,
        # `*`: no password matches, yet the account is not locked (`!`), which dropbear
        # would refuse even for key logins.
        "etc/passwd": "root:*:0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\n",
        "etc/shells": "/bin/sh\n",
        "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
        # Nothing but what init does at shutdown and a shell for whoever is on the
        # serial console (the VM's owner, through the control plane), once asked.
        "etc/inittab": (
            f"{CONSOLE}::askfirst:-/bin/sh\n"
            "::shutdown:/bin/busybox killall dropbear\n"
            "::shutdown:/bin/busybox umount -a -r\n"
        ),
        POWER_BUTTON_FILE: _script("power-button.sh"),
        "etc/profile": "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h# '\n",
    }


EXECUTABLES = frozenset({"init", POWER_BUTTON_FILE, HOTPLUG_FILE})


def kernel_arguments(*, probe: bool = False) -> str:
    """The kernel command line: the serial console last, so that it is /dev/console
    (where init's marker lines go) and the VGA console shows the boot too."""
    if probe:
        # A probe that fails in the kernel reboots at once, and QEMU then exits.
        return f"console={CONSOLE} panic=-1 {PROBE_ARG}"
    return f"console=tty0 console={CONSOLE},115200n8"


def syslinux_config(arguments: str | None = None) -> str:
    """syslinux.cfg: boot the kernel and initramfs at once, no prompt."""
    return (
        "DEFAULT tiny\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL tiny\n"
        f"  LINUX /{KERNEL_FILE}\n"
        f"  INITRD /{INITRD_FILE}\n"
        f"  APPEND {arguments if arguments is not None else kernel_arguments()}\n"
    )
