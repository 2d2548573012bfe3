"""Fixtures of the agent's unit tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state dir short enough for a VM's socket paths (107 bytes at most), which a
    pytest worker's tmp_path named after a long test may not be."""
    with tempfile.TemporaryDirectory(prefix="nubis-") as name:
        yield Path(name)
