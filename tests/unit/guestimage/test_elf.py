"""What the guest's files need, read from their ELF headers and sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from nubis.guestimage import BuildError, elf
from tests.unit.guestimage.elf import kernel_module, program


def test_a_program_s_loader_and_libraries_are_read_from_its_elf_header() -> None:
    facts = elf.elf_facts(program("/lib64/ld-linux-x86-64.so.2", ["libz.so.1", "libc.so.6"]))
    assert facts.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert facts.needed == ("libz.so.1", "libc.so.6")
    assert elf.elf_facts(program(None, [])) == elf.ElfFacts(None, ())


def test_a_debian_program_needs_the_c_library_through_its_loader() -> None:
    facts = elf.elf_facts(Path("/bin/ls").resolve().read_bytes())
    assert facts.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in facts.needed


def test_a_kernel_module_s_dependencies_come_from_its_modinfo() -> None:
    module = kernel_module("virtio_net", ["virtio_ring", "virtio", "net_failover"])
    assert elf.module_info(module)["name"] == "virtio_net"
    assert elf.module_depends(module) == ("virtio_ring", "virtio", "net_failover")
    assert elf.module_depends(kernel_module("virtio_ring", [])) == ()


def test_what_is_not_elf_is_an_error() -> None:
    with pytest.raises(BuildError, match="ELF"):
        elf.elf_facts(b"#!/bin/sh\n")
    with pytest.raises(BuildError, match="modinfo"):
        elf.module_info(program(None, []))
