"""The tiny guest's own files: its init script, its /etc and its boot configuration."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nubis.agent.net.metadata_answers import network_data
from nubis.agent.seed import meta_data
from nubis.guestimage import guest
from nubis.protocol import Ipam, Network
from tests.unit.agent.vm_specs import nic, vm_spec

MODULES = ["virtio_ring", "virtio", "virtio_pci", "failover", "net_failover", "virtio_net"]
KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3x alice@laptop",
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= bob@desk",
    "ssh-rsa AAAAB3NzaC1yc2E= carol with spaces",
]


def test_the_init_loads_the_modules_in_the_order_given() -> None:
    script = guest.init_script(MODULES)
    assert f'modules="{" ".join(MODULES)}"\nfor module in $modules; do' in script
    assert '/lib/modules/$module.ko"' in script


def test_the_init_is_a_shell_script_with_every_placeholder_filled(tmp_path: Path) -> None:
    script = guest.init_script(MODULES)
    assert script.startswith("#!/bin/sh\n")
    assert "@" not in script.replace("@openssh", "")
    path = tmp_path / "init"
    path.write_text(script)
    subprocess.run(["sh", "-n", str(path)], check=True)


def test_a_probe_boot_says_so_and_powers_off_before_anything_else() -> None:
    script = guest.init_script(MODULES)
    probe = script.index(f'"{guest.PROBE_ARG}"')
    assert script.index(guest.PROBE_MARKER) > probe
    assert script.index("poweroff -f") > probe
    assert probe < script.index("insmod") and probe < script.index("--install")


def test_the_init_makes_eui64_addresses_before_the_nic_exists() -> None:
    script = guest.init_script(MODULES)
    assert "addr_gen_mode=0" in script and "use_tempaddr=0" in script
    assert script.index("/proc/sys/net/ipv6/conf/default/") < script.index("insmod")


def test_the_init_asks_the_metadata_service_on_both_addresses_of_each_nic_then_the_seed() -> None:
    script = guest.init_script(MODULES, metadata_wait=45, metadata_wait_with_seed=2)
    functions = guest.network_functions()
    assert "http://169.254.169.254" in functions
    assert "http://[fe80::a9fe:a9fe%$link]" in functions
    assert "/latest/meta-data/hostname" in functions
    assert 'for link in $(nics); do\n            if ask_metadata "$link"' in script
    assert "/latest/meta-data/public-keys/" in script
    assert "wait=45" in script and "wait=2" in script
    assert script.index("ask_metadata") < script.index('seed_hostname "$seed/meta-data"')


def test_the_init_configures_the_nics_after_the_network_data_then_lets_mdev_watch() -> None:
    script = guest.init_script(MODULES)
    assert f". /{guest.NETWORK_FILE}" in script
    fetched = script.index("fetch_network_data")
    assert fetched < script.index("mdev -d") < script.index('configure_nic "$link"')
    assert "/openstack/latest/network_data.json" in guest.network_functions()


def test_the_init_says_ssh_ready_only_after_dropbear_listens_and_then_hands_over_pid_1() -> None:
    script = guest.init_script(MODULES)
    assert 'say() { echo "nubis-tiny: $*"; }' in guest.network_functions()
    assert guest.READY_MARKER == "nubis-tiny: ssh ready"
    assert script.index("dropbear -r") < script.index('say "ssh ready"')
    assert script.rstrip().endswith("exec /bin/busybox init")


def test_a_bad_module_name_is_refused() -> None:
    with pytest.raises(ValueError, match="module"):
        guest.init_script(["virtio; reboot"])


def _shell(function: str, meta: Path) -> list[str]:
    done = subprocess.run(
        ["sh", "-c", f'{guest.seed_functions()}\n{function} "$1"', "sh", str(meta)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


@pytest.mark.skipif(not shutil.which("sh"), reason="needs a POSIX shell")
def test_the_seed_s_hostname_and_keys_are_read_from_what_nubis_writes(tmp_path: Path) -> None:
    meta = tmp_path / "meta-data"
    meta.write_text(meta_data(vm_spec(hostname="web-7", ssh_keys=KEYS)))
    assert _shell("seed_hostname", meta) == ["web-7"]
    assert _shell("seed_keys", meta) == KEYS


def test_a_yaml_seed_is_read_too(tmp_path: Path) -> None:
    meta = tmp_path / "meta-data"
    keys = "".join(f"  - {key}\n" for key in KEYS)
    meta.write_text(f"instance-id: i-1\nlocal-hostname: db1\npublic-keys:\n{keys}")
    assert _shell("seed_hostname", meta) == ["db1"]
    assert _shell("seed_keys", meta) == KEYS


def test_mdev_runs_the_nic_handler_for_network_interfaces_only() -> None:
    files = guest.etc_files()
    rules = [line for line in files["etc/mdev.conf"].splitlines() if not line.startswith("#")]
    assert rules[0] == f"SUBSYSTEM=net;eth[0-9]+ 0:0 600 ! */{guest.HOTPLUG_FILE}"
    # Nothing else: no device nodes made or removed (devtmpfs does that).
    assert rules[1:] == [".* 0:0 600 !"]
    assert guest.HOTPLUG_FILE in guest.EXECUTABLES
    handler = files[guest.HOTPLUG_FILE]
    assert f". /{guest.NETWORK_FILE}" in handler
    assert 'configure_nic "$MDEV"' in handler and 'say "nic $MDEV removed"' in handler


def test_the_guest_scripts_are_shell_scripts_with_every_placeholder_filled(
    tmp_path: Path,
) -> None:
    files = guest.etc_files()
    for name in (guest.NETWORK_FILE, guest.SEED_FILE, guest.HOTPLUG_FILE, guest.POWER_BUTTON_FILE):
        assert re.search(r"@[A-Z_]+@", files[name]) is None, name
        path = tmp_path / "script"
        path.write_text(files[name])
        subprocess.run(["sh", "-n", str(path)], check=True)


def test_the_init_reads_the_seed_functions_from_the_guest_s_seed_file() -> None:
    assert f". /{guest.SEED_FILE}" in guest.init_script(MODULES)
    assert guest.etc_files()[guest.SEED_FILE] == guest.seed_functions()
    assert "seed_hostname() {" in guest.seed_functions()


def test_project_nics_route_replies_through_table_100_plus_their_index() -> None:
    functions = guest.network_functions()
    assert "ROUTE_TABLE_BASE=100\n" in functions
    assert 'table=$(( ROUTE_TABLE_BASE + $(cat "/sys/class/net/$link/ifindex") ))' in functions


def _nic_networks(data: dict[str, Any], mac: str) -> list[str]:
    done = subprocess.run(
        ["sh", "-c", f'{guest.network_functions()}\nnic_networks "$1"', "sh", mac],
        input=json.dumps(data, indent=2),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


class _Networks:
    def __init__(self, networks: list[Network]) -> None:
        self.by_id = {network.id: network for network in networks}

    def __call__(self, network_id: str) -> Network | None:
        return self.by_id.get(network_id)


def _network(ipam: Ipam, gateway: str | None) -> Network:
    return Network(
        id=f"net-{ipam}",
        bridge=f"nb{ipam}",
        vxlan=f"nx{ipam}",
        vni=7,
        ipam=ipam,
        prefix="fd12:3456:789a:1::/64" if gateway else None,
        gateway=gateway,
        mac="02:00:00:00:00:07",
    )


@pytest.mark.skipif(not shutil.which("awk"), reason="needs awk")
def test_a_nic_finds_its_network_in_the_network_data_by_its_mac() -> None:
    manual = _network(Ipam.MANUAL, "fd12:3456:789a:1::1")
    nics = [
        nic(0),
        nic(1).model_copy(update={"network": manual.id, "ipam": Ipam.MANUAL, "mtu": 1430}),
        nic(2).model_copy(update={"network": "net-none", "ipam": Ipam.NONE, "address": None}),
        nic(3).model_copy(update={"network": "net-auto", "ipam": Ipam.AUTO, "mtu": 1430}),
    ]
    data = network_data(vm_spec(nics=nics), _Networks([manual]))
    assert _nic_networks(data, nic(0).mac) == ["link -", f"ipv6_slaac {nic(0).address} 64 -"]
    assert _nic_networks(data, nic(1).mac.upper()) == [
        "link 1430",
        f"ipv6 {nic(1).address} 64 fd12:3456:789a:1::1",
    ]
    assert _nic_networks(data, nic(2).mac) == ["link -"]
    assert _nic_networks(data, nic(3).mac) == ["link 1430", f"ipv6_slaac {nic(3).address} 64 -"]
    assert _nic_networks(data, "52:54:00:00:00:99") == []


@pytest.mark.skipif(not shutil.which("awk"), reason="needs awk")
def test_a_network_s_netmask_or_address_gives_its_prefix_length() -> None:
    data = {
        "links": [{"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"}],
        "networks": [
            {"id": "n0", "link": "a", "type": "ipv6", "ip_address": "fd00::5",
             "netmask": "ffff:ffff:ffff:ff00::", "gateway": "fd00::1"},
            {"id": "n1", "link": "a", "type": "ipv6", "ip_address": "fd01::5/80"},
            {"id": "n2", "link": "b", "type": "ipv6", "ip_address": "fd02::5/80"},
        ],
        "services": [],
    }  # fmt: skip
    assert _nic_networks(data, "52:54:00:00:00:01") == [
        "link -",
        "ipv6 fd00::5 56 fd00::1",
        "ipv6 fd01::5 80 -",
    ]


def test_root_logs_in_with_a_key_to_a_busybox_shell() -> None:
    files = guest.etc_files()
    # `*`: no password, yet not `!` (locked), which dropbear refuses keys for too.
    assert files["etc/passwd"] == "root:*:0:0:root:/root:/bin/sh\n"
    assert files["etc/shells"] == "/bin/sh\n"
    assert files["etc/acpi/PWRF/00000080"].endswith("\nexec /bin/busybox poweroff\n")
    assert "etc/acpi/PWRF/00000080" in guest.EXECUTABLES


def test_the_serial_console_is_the_last_console_so_init_writes_there() -> None:
    for probe in (False, True):
        consoles = [
            word
            for word in guest.kernel_arguments(probe=probe).split()
            if word.startswith("console=")
        ]
        assert consoles[-1].startswith(f"console={guest.CONSOLE}")
    assert guest.PROBE_ARG in guest.kernel_arguments(probe=True).split()
    assert "panic=-1" in guest.kernel_arguments(probe=True).split()
    assert guest.PROBE_ARG not in guest.kernel_arguments().split()


def test_syslinux_boots_the_kernel_and_initramfs_at_once() -> None:
    lines = [line.strip() for line in guest.syslinux_config().splitlines()]
    assert "DEFAULT tiny" in lines and "LABEL tiny" in lines
    assert "PROMPT 0" in lines and "TIMEOUT 0" in lines
    assert f"LINUX /{guest.KERNEL_FILE}" in lines
    assert f"INITRD /{guest.INITRD_FILE}" in lines
    assert f"APPEND {guest.kernel_arguments()}" in lines
    assert "APPEND quiet" in guest.syslinux_config("quiet")
