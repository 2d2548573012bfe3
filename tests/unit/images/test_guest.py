"""The tiny guest's own files: its init script, its /etc and its boot configuration."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nubis.agent.seed import meta_data
from nubis.images import guest
from tests.unit.agent.vm_specs import vm_spec

MODULES = ["virtio_ring", "virtio", "virtio_pci", "failover", "net_failover", "virtio_net"]
KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3x alice@laptop",
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= bob@desk",
    "ssh-rsa AAAAB3NzaC1yc2E= carol with spaces",
]


def test_the_init_loads_the_modules_in_the_order_given() -> None:
    script = guest.init_script(MODULES)
    assert f"for module in {' '.join(MODULES)}; do" in script
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


def test_the_init_asks_the_metadata_service_on_both_addresses_then_the_seed() -> None:
    script = guest.init_script(MODULES, metadata_wait=45, metadata_wait_with_seed=2)
    assert "http://169.254.169.254" in script
    assert "http://[fe80::a9fe:a9fe%$nic]" in script
    assert "/latest/meta-data/hostname" in script
    assert "/latest/meta-data/public-keys/" in script
    assert "wait=45" in script and "wait=2" in script
    assert script.index("meta-data/hostname") < script.index('seed_hostname "$seed/meta-data"')


def test_the_init_says_ssh_ready_only_after_dropbear_listens_and_then_hands_over_pid_1() -> None:
    script = guest.init_script(MODULES)
    assert 'say() { echo "nubis-tiny: $*"; }' in script
    assert guest.READY_MARKER == "nubis-tiny: ssh ready"
    assert script.index("dropbear -r") < script.index('say "ssh ready"')
    assert script.rstrip().endswith("exec /bin/busybox init")


def test_a_bad_module_name_is_refused() -> None:
    with pytest.raises(ValueError, match="module"):
        guest.init_script(["virtio; reboot"])


def _shell(function: str, meta: Path) -> list[str]:
    done = subprocess.run(
        ["sh", "-c", f'{guest.SEED_FUNCTIONS}\n{function} "$1"', "sh", str(meta)],
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


def test_root_logs_in_with_a_key_to_a_busybox_shell() -> None:
    files = guest.etc_files()
    # `*`: no password, yet not `!` (locked), which dropbear refuses keys for too.
    assert files["etc/passwd"] == "root:*:0:0:root:/root:/bin/sh\n"
    assert files["etc/shells"] == "/bin/sh\n"
    assert "poweroff" in files["etc/acpi/PWRF/00000080"]
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
