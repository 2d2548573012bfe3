"""Names of users, projects and resources."""

from __future__ import annotations

import pytest

from nubis.errors import InvalidInput
from nubis.ids import Kind, format_id, new_id
from nubis.names import check_email, check_name


@pytest.mark.parametrize("name", ["a", "web", "web-1", "_x", "a" * 32, "db_2"])
def test_valid_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "1a", "-a", "a" * 33, "a.b", "a b", "ä", "web/1", "prj-" + "0" * 26]
)
def test_invalid_names_are_refused_with_the_field(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_name(name, "name")
    assert "name" in refused.value.errors


def test_a_name_may_not_look_like_an_id() -> None:
    with pytest.raises(InvalidInput, match="look like an id"):
        check_name(format_id(Kind.VM, new_id()))


def test_emails_are_lowercased_and_checked() -> None:
    assert check_email(" Alice@Example.Test ") == "alice@example.test"
    assert check_email("admin@localhost") == "admin@localhost"
    for bad in ["alice", "a@b@c", "@x", "a@", "a b@c.d", "a@.x"]:
        with pytest.raises(InvalidInput):
            check_email(bad)
