"""Public ids: UUIDv7 keys rendered as a type prefix and lowercase Crockford base32."""

from __future__ import annotations

from uuid import UUID

import pytest

from nubis.errors import InvalidInput
from nubis.ids import Kind, format_id, looks_like_id, new_id, parse_id

SMALLEST = UUID(int=0)
LARGEST = UUID(int=2**128 - 1)


@pytest.mark.parametrize("kind", list(Kind))
def test_parse_reads_back_every_key_format_writes(kind: Kind) -> None:
    for _ in range(200):
        key = new_id()
        assert parse_id(kind, format_id(kind, key)) == key


@pytest.mark.parametrize("key", [SMALLEST, LARGEST], ids=["zero", "all-ones"])
def test_parse_reads_back_the_extreme_keys(key: UUID) -> None:
    text = format_id(Kind.VM, key)
    assert parse_id(Kind.VM, text) == key


def test_format_writes_the_prefix_and_26_base32_digits() -> None:
    assert format_id(Kind.VM, SMALLEST) == "vm-" + "0" * 26
    assert format_id(Kind.NETWORK, LARGEST) == "nw-7" + "z" * 25


def test_new_keys_are_version_7() -> None:
    assert new_id().version == 7


def test_public_ids_sort_in_creation_order() -> None:
    keys = [new_id() for _ in range(1000)]
    texts = [format_id(Kind.STRAND, key) for key in keys]
    assert sorted(texts) == texts
    assert len(set(texts)) == len(texts)


def test_parse_refuses_an_id_of_another_kind() -> None:
    text = format_id(Kind.VM, new_id())
    with pytest.raises(InvalidInput) as caught:
        parse_id(Kind.PROJECT, text)
    assert caught.value.detail == f"{text!r} is not a project id (expected prj-…)"


def test_parse_names_a_two_word_kind_with_a_space() -> None:
    with pytest.raises(InvalidInput, match="is not a ssh key id"):
        parse_id(Kind.SSH_KEY, "vm-" + "0" * 26)


def test_parse_refuses_text_without_a_prefix() -> None:
    with pytest.raises(InvalidInput, match=r"is not a vm id \(expected vm-…\)"):
        parse_id(Kind.VM, "0" * 26)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "0" * 25,
        "0" * 27,
        "0" * 25 + "u",
        "0" * 25 + "i",
        "0" * 25 + "l",
        "0" * 25 + "o",
        "0" * 25 + "-",
        "0" * 12 + " " + "0" * 13,
    ],
    ids=["empty", "short", "long", "u", "i", "l", "o", "dash", "inner-space"],
)
def test_parse_refuses_a_malformed_body(body: str) -> None:
    text = f"vm-{body}"
    with pytest.raises(InvalidInput) as caught:
        parse_id(Kind.VM, text)
    assert caught.value.detail == f"{text!r} is not a well-formed id"
    assert caught.value.code == "invalid_input"


@pytest.mark.parametrize("first", "89abcdefghjkmnpqrstvwxyz")
def test_parse_refuses_a_body_beyond_128_bits(first: str) -> None:
    text = "vm-" + first + "0" * 25
    with pytest.raises(InvalidInput, match="is not a well-formed id"):
        parse_id(Kind.VM, text)


def test_parse_ignores_case_and_surrounding_space() -> None:
    key = new_id()
    text = format_id(Kind.IMAGE, key)
    assert parse_id(Kind.IMAGE, text.upper()) == key
    assert parse_id(Kind.IMAGE, f"  {text}\n") == key


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        (Kind.VM, "vm-" + "0" * 26, True),
        (Kind.VM, "VM-" + "Z" * 26, True),
        (Kind.HOST, "host-" + "1" * 26, True),
        (Kind.VM, "nw-" + "0" * 26, False),
        (Kind.VM, "vm-" + "0" * 25, False),
        (Kind.VM, "vm-" + "0" * 27, False),
        (Kind.VM, "web-1", False),
        (Kind.VM, "vm-web", False),
        (Kind.VM, "", False),
    ],
)
def test_looks_like_id_tells_ids_from_names(kind: Kind, text: str, expected: bool) -> None:
    assert looks_like_id(kind, text) is expected


def test_looks_like_id_accepts_every_formatted_id() -> None:
    for kind in Kind:
        assert looks_like_id(kind, format_id(kind, new_id()))
