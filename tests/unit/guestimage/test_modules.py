"""Kernel modules: named by their files, loaded after what they depend on."""

from __future__ import annotations

from pathlib import Path

import pytest

from nubis.guestimage import BuildError, modules

DEPENDS = {
    "virtio_net": ["virtio_ring", "virtio", "net_failover"],
    "virtio_pci": ["virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"],
    "virtio": ["virtio_ring"],
    "net_failover": ["failover"],
}


def test_modules_load_after_what_they_depend_on_and_otherwise_as_asked() -> None:
    order = modules.load_order(["virtio_pci", "virtio_net"], lambda name: DEPENDS.get(name, []))
    assert order == [
        "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio",
        "virtio_pci", "failover", "net_failover", "virtio_net",
    ]  # fmt: skip


def test_modules_that_depend_on_each_other_are_an_error() -> None:
    with pytest.raises(BuildError, match="a -> b"):
        modules.load_order(["a"], lambda name: {"a": ["b"], "b": ["a"]}[name])


def test_a_module_s_name_is_its_file_s_with_dashes_as_underscores() -> None:
    assert modules.module_name(Path("drivers/char/hw_random/virtio-rng.ko")) == "virtio_rng"
