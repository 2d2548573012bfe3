"""Durations and sizes typed with a unit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nubis.errors import InvalidInput
from nubis.units import format_size, parse_duration, parse_size


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


@pytest.mark.parametrize("text", ["999999999w", "5215w", "36501d", "876001h"])
def test_a_duration_beyond_a_hundred_years_is_refused_not_overflowed(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_duration(text)
    assert refused.value.detail == f"{text!r} is too long: a duration is at most 36500d"


def test_a_duration_of_a_hundred_years_is_read() -> None:
    assert parse_duration("36500d") == timedelta(days=36500)


@pytest.mark.parametrize("text", ["999999999999999T", "8388608T", "9223373TB"])
def test_a_size_beyond_a_64_bit_integer_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_size(text)
    assert refused.value.detail == (
        f"{text!r} is too large: a size is at most 9223372036854775807 bytes"
    )


def test_the_largest_size_below_2_to_the_63_is_read() -> None:
    assert parse_size("8388607T") == 8388607 * 1024**4
    assert parse_size("9223372TB") == 9223372 * 1000**4


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (128 * 1024**2, "128MiB"),
        (4 * 1024**4, "4TiB"),
        (1536 * 1024**2, "1536MiB"),
        (1000, "1000B"),
    ],
)
def test_a_size_is_shown_in_the_largest_binary_unit_that_gives_a_whole_number(
    size: int, text: str
) -> None:
    assert format_size(size) == text
