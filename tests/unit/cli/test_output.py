"""What the CLI prints comes out as the API or the user gave it."""

from __future__ import annotations

import pytest

from nubis.cli import output


def test_a_mac_address_is_printed_as_it_is_not_as_an_emoji(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output.console.print("NIC 8e:d7:85:cd:b8:b0 [bold]web[/bold]")
    assert capsys.readouterr().out == "NIC 8e:d7:85:cd:b8:b0 [bold]web[/bold]\n"


def test_a_shown_field_keeps_its_colons(capsys: pytest.CaptureFixture[str]) -> None:
    output.show({"mac": "02:00:00:cd:00:01", "note": ":smile:"}, as_json=False)
    assert capsys.readouterr().out == "mac   02:00:00:cd:00:01\nnote  :smile:\n"
