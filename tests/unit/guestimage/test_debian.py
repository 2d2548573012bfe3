"""Debian packages as parts: what apt says of them, and what their files need."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from nubis.guestimage import debian
from nubis.guestimage.debian import BuildError, Package
from tests.unit.guestimage.elf import kernel_module, program

SHOW = """\
Package: dropbear-bin
Version: 2022.83-1+deb12u3
Architecture: amd64
Depends: libc6 (>= 2.34), libcrypt1 (>= 1:4.1.0), zlib1g:any | libz-alt
Description: lightweight SSH2 server and client - command line interface
 dropbear is a SSH 2 server and client designed to be small enough
 Package: this continuation line is not a field
SHA256: 44ac9aaae0105bca66ea4d457852bf97020ccab33d5c088b0e5c8668891290a0

Package: libcrypt1
Version: 1:4.4.33-2
Architecture: amd64
SHA256: 1111111111111111111111111111111111111111111111111111111111111111
"""


def test_apt_s_answer_gives_each_package_s_version_hash_and_needs() -> None:
    dropbear, crypt = debian.parse_show(SHOW)
    assert dropbear == Package(
        name="dropbear-bin",
        version="2022.83-1+deb12u3",
        architecture="amd64",
        sha256="44ac9aaae0105bca66ea4d457852bf97020ccab33d5c088b0e5c8668891290a0",
        depends=("libc6", "libcrypt1", "zlib1g"),
    )
    assert crypt.depends == ()
    # As `apt-get download` names it: the epoch's colon is escaped.
    assert crypt.file_name == "libcrypt1_1%3a4.4.33-2_amd64.deb"


def test_a_package_apt_says_too_little_of_is_an_error() -> None:
    with pytest.raises(BuildError, match="Version"):
        debian.parse_show("Package: half\nArchitecture: amd64\n")


def test_the_kernel_package_is_the_one_the_meta_package_depends_on() -> None:
    answer = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n"
    assert debian.kernel_package_from(answer) == "linux-image-6.1.0-57-amd64"
    with pytest.raises(BuildError, match="apt-get update"):
        debian.kernel_package_from("linux-image-amd64\n")


def test_a_recursive_depends_answer_lists_each_real_package_once() -> None:
    answer = (
        "dropbear-bin\n  Depends: libc6\n  Depends: <debconf-2.0>\n"
        "libc6\n  Depends: libgcc-s1\n<debconf-2.0>\nlibgcc-s1\n  Depends: libc6\n"
    )
    assert debian.closure_names_from(answer) == ["dropbear-bin", "libc6", "libgcc-s1"]


def test_a_cached_deb_with_apt_s_hash_is_used_as_it_is(tmp_path: Path) -> None:
    content = b"!<arch>\n a deb, as far as this test cares"
    package = Package("tiny-part", "1:2.0-1", "amd64", hashlib.sha256(content).hexdigest())
    (tmp_path / package.file_name).write_bytes(content)
    assert debian.fetch([package], tmp_path) == {"tiny-part": tmp_path / package.file_name}


def test_a_program_s_loader_and_libraries_are_read_from_its_elf_header() -> None:
    facts = debian.elf_facts(program("/lib64/ld-linux-x86-64.so.2", ["libz.so.1", "libc.so.6"]))
    assert facts.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert facts.needed == ("libz.so.1", "libc.so.6")
    assert debian.elf_facts(program(None, [])) == debian.ElfFacts(None, ())


def test_this_python_needs_the_c_library() -> None:
    facts = debian.elf_facts(Path(sys.executable).resolve().read_bytes())
    if facts.interpreter is None:
        pytest.skip("this python is linked statically")
    assert any(name.startswith("libc.so") for name in facts.needed)


def test_a_kernel_module_s_dependencies_come_from_its_modinfo() -> None:
    module = kernel_module("virtio_net", ["virtio_ring", "virtio", "net_failover"])
    assert debian.module_info(module)["name"] == "virtio_net"
    assert debian.module_depends(module) == ("virtio_ring", "virtio", "net_failover")
    assert debian.module_depends(kernel_module("virtio_ring", [])) == ()


def test_what_is_not_elf_is_an_error() -> None:
    with pytest.raises(BuildError, match="ELF"):
        debian.elf_facts(b"#!/bin/sh\n")
    with pytest.raises(BuildError, match="modinfo"):
        debian.module_info(program(None, []))


DEPENDS = {
    "virtio_net": ["virtio_ring", "virtio", "net_failover"],
    "virtio_pci": ["virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"],
    "virtio": ["virtio_ring"],
    "net_failover": ["failover"],
}


def test_modules_load_after_what_they_depend_on_and_otherwise_as_asked() -> None:
    order = debian.load_order(["virtio_pci", "virtio_net"], lambda name: DEPENDS.get(name, []))
    assert order == [
        "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio",
        "virtio_pci", "failover", "net_failover", "virtio_net",
    ]  # fmt: skip


def test_modules_that_depend_on_each_other_are_an_error() -> None:
    with pytest.raises(BuildError, match="a -> b"):
        debian.load_order(["a"], lambda name: {"a": ["b"], "b": ["a"]}[name])


def test_a_module_s_name_is_its_file_s_with_dashes_as_underscores() -> None:
    assert debian.module_name(Path("drivers/char/hw_random/virtio-rng.ko")) == "virtio_rng"
