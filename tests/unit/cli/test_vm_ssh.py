"""`nubis vm ssh`: the ssh command line that reaches a VM, its host key kept per VM."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nubis.cli.vm_ssh import default_identity, ssh_address, ssh_argv
from nubis.errors import InvalidInput

KNOWN = Path("/home/ann/.config/nubis/known_hosts")
VM_ID = "vm-0123456789abcdefghjkmnpqrs"


def _vm(*addresses: str | None) -> dict[str, Any]:
    nics = [{"mac": f"02:00:00:00:00:0{n}", "address": a} for n, a in enumerate(addresses)]
    return {"name": "web1", "id": VM_ID, "nics": nics}


def test_the_argv_files_the_host_key_under_the_vm_id_and_waits_for_a_booting_guest() -> None:
    argv = ssh_argv(
        "2001:db8:1::5", VM_ID, user="root", identity=Path("/k/id_ed25519"), known_hosts=KNOWN
    )

    assert argv == [
        "ssh",
        "-o", "ConnectionAttempts=30",
        "-o", f"HostKeyAlias={VM_ID}",
        "-o", f"UserKnownHostsFile={KNOWN}",
        "-o", "StrictHostKeyChecking=accept-new",
        "-i", "/k/id_ed25519",
        "-l", "root",
        "2001:db8:1::5",
    ]  # fmt: skip


def test_without_an_identity_ssh_chooses_the_key_itself() -> None:
    argv = ssh_argv("2001:db8::5", VM_ID, user="debian", identity=None, known_hosts=KNOWN)

    assert "-i" not in argv
    assert argv[-3:] == ["-l", "debian", "2001:db8::5"]


def test_extra_arguments_follow_the_destination_as_ssh_options_and_the_remote_command() -> None:
    argv = ssh_argv(
        "2001:db8::5", VM_ID, user="root", identity=None, known_hosts=KNOWN,
        extra=["-v", "uname", "-a"],
    )  # fmt: skip

    assert argv[-4:] == ["2001:db8::5", "-v", "uname", "-a"]


def test_the_address_is_written_in_its_canonical_form() -> None:
    argv = ssh_argv("2001:0db8:0000::0005", VM_ID, user="root", identity=None, known_hosts=KNOWN)
    assert argv[-1] == "2001:db8::5"


def test_something_other_than_an_ipv6_address_is_never_handed_to_ssh() -> None:
    for bad in ("-oProxyCommand=evil", "192.0.2.1", "web1.example"):
        with pytest.raises(ValueError):
            ssh_argv(bad, VM_ID, user="root", identity=None, known_hosts=KNOWN)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="the OpenSSH client is not installed")
def test_ssh_itself_reads_the_argv_as_meant(tmp_path: Path) -> None:
    identity = tmp_path / "id_ed25519"
    identity.write_text("not read by ssh -G\n")
    argv = ssh_argv(
        "2001:db8::5", VM_ID, user="root", identity=identity, known_hosts=tmp_path / "known",
        extra=["-p", "2222", "uptime"],
    )  # fmt: skip

    # -G prints the configuration ssh would use and connects nowhere.
    shown = subprocess.run(
        [argv[0], "-G", "-F", "/dev/null", *argv[1:]],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip

    settings = {tuple(line.split(" ", 1)) for line in shown.splitlines()}
    assert {
        ("hostname", "2001:db8::5"),
        ("user", "root"),
        ("port", "2222"),
        ("hostkeyalias", VM_ID),
        ("userknownhostsfile", str(tmp_path / "known")),
        ("stricthostkeychecking", "accept-new"),
        ("identityfile", str(identity)),
    } <= settings


def test_the_address_is_the_first_nic_s_that_has_one() -> None:
    assert ssh_address(_vm(None, "2001:db8::7", "2001:db8::8")) == "2001:db8::7"


def test_a_vm_without_an_address_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidInput, match="VM web1 has no address"):
        ssh_address(_vm(None))
    with pytest.raises(InvalidInput, match="is not IPv6"):
        ssh_address(_vm("192.0.2.1"))


def test_the_default_identity_is_the_first_usual_key_that_exists(tmp_path: Path) -> None:
    assert default_identity(tmp_path) is None
    keys = tmp_path / ".ssh"
    keys.mkdir()
    (keys / "id_rsa").write_text("rsa")
    assert default_identity(tmp_path) == keys / "id_rsa"
    (keys / "id_ecdsa").write_text("ecdsa")
    assert default_identity(tmp_path) == keys / "id_ecdsa"
    (keys / "id_ed25519").write_text("ed25519")
    assert default_identity(tmp_path) == keys / "id_ed25519"
