"""A host whose gate is closed (just started, or fenced) starts no VM."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nubis.agent.image_cache import ImageCache
from nubis.agent.qemu.paths import VmPaths
from nubis.agent.reconciler import REBOOTS_FILE, Reconciler
from nubis.protocol import VmState
from tests.unit.agent.vm_specs import vm_spec


def _no_chunks(image_id: str) -> Iterator[bytes]:
    raise AssertionError(f"no image is fetched here ({image_id})")


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state dir short enough for a VM's socket paths (a pytest worker's tmp_path may
    not be)."""
    with tempfile.TemporaryDirectory(prefix="nubis-") as name:
        yield Path(name)


def test_a_vm_that_should_run_is_not_started_while_the_gate_is_closed(state_dir: Path) -> None:
    images = ImageCache(state_dir / "images", _no_chunks)
    reconciler = Reconciler(state_dir, images, "tcg", may_start=lambda: False)
    try:
        spec = vm_spec(running=True)
        paths = VmPaths.of(reconciler.vms_root, spec.id)
        paths.dir.mkdir(parents=True)
        # Were it started, QEMU would be run (and fail here, with no disk).
        assert reconciler._power(spec, paths) == VmState.PREPARING
        assert not (paths.dir / REBOOTS_FILE).exists()
        # The next pass comes soon, to start it once the gate opens.
        assert reconciler.busy
    finally:
        reconciler.close()
