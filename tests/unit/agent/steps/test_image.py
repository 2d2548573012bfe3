"""The image step: a VM waits while its image comes, fails with the fetch's reason, and
needs no image once it has its disk."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nubis.agent.image_cache import ImageCache
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.steps.image import Image
from nubis.agent.steps.step import DONE, Host, VmPass, waiting
from nubis.protocol import VmState
from tests.unit.agent.vm_specs import vm_spec


def _vm(state_dir: Path, images: ImageCache) -> VmPass:
    return VmPass(Host(images, "tcg"), VmPaths.of(state_dir / "vms", vm_spec().id))


def test_a_vm_waits_while_its_image_is_fetched(state_dir: Path) -> None:
    release = threading.Event()

    def slow(image_id: str) -> Iterator[bytes]:
        release.wait(10)
        raise OSError("the control plane went away")

    images = ImageCache(state_dir / "images", slow)
    vm = _vm(state_dir, images)
    try:
        assert Image().run(vm_spec(), vm) == waiting(VmState.PREPARING)
        assert vm.base is None
    finally:
        release.set()
        images.wait(10)


def test_a_vm_whose_image_cannot_be_fetched_fails_with_the_reason(state_dir: Path) -> None:
    def refused(image_id: str) -> Iterator[bytes]:
        raise OSError("the image was refused: image not found")

    images = ImageCache(state_dir / "images", refused)
    vm = _vm(state_dir, images)
    assert Image().run(vm_spec(), vm) == waiting(VmState.PREPARING)
    images.wait(10)
    with pytest.raises(RuntimeError, match="the image was refused: image not found"):
        Image().run(vm_spec(), vm)
    images.wait(10)  # the failed fetch is tried again, in a thread that writes under state_dir


def test_a_vm_with_its_disk_needs_no_image(state_dir: Path) -> None:
    def never(image_id: str) -> Iterator[bytes]:
        raise AssertionError("no image is fetched for a VM that has its disk")

    vm = _vm(state_dir, ImageCache(state_dir / "images", never))
    vm.paths.dir.mkdir(parents=True)
    vm.paths.disk.write_bytes(b"")
    assert Image().run(vm_spec(), vm) == DONE


def test_a_fetched_image_is_the_base_of_the_vms_disk(state_dir: Path) -> None:
    content = b"qcow2 bytes, as the control plane sent them"
    image = vm_spec().image.model_copy(
        update={"sha256": hashlib.sha256(content).hexdigest(), "size_bytes": len(content)}
    )
    images = ImageCache(state_dir / "images", lambda image_id: iter([content]))
    vm = _vm(state_dir, images)
    spec = vm_spec(image=image)
    assert Image().run(spec, vm) == waiting(VmState.PREPARING)
    images.wait(10)
    assert Image().run(spec, vm) == DONE
    assert vm.base == state_dir / "images" / f"{image.id}.qcow2"
