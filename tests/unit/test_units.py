"""Durations and sizes typed with a unit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nubis.errors import InvalidInput
from nubis.units import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("90m", 5400), ("12h", 43200), ("30d", 2592000), ("2w", 1209600)],
)
def test_durations_with_a_unit_are_read(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["30", "30x", "d", "-1d", "1.5h", "0s", "1 d", "1D", ""])
def test_a_duration_without_a_known_unit_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * 1024**2),
        ("512MiB", 512 * 1024**2),
        ("4G", 4 * 1024**3),
        ("4GiB", 4 * 1024**3),
        ("20GB", 20 * 1000**3),
        ("1T", 1024**4),
        ("4096B", 4096),
        (" 2K ", 2048),
    ],
)
def test_sizes_with_a_unit_are_read_binary_unless_decimal_is_spelt(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["512", "-1G", "1.5G", "4g", "4 GB", "0G", "G", "4Gb", "4X"])
def test_a_size_without_a_known_unit_or_below_one_byte_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not a size"):
        parse_size(text)
