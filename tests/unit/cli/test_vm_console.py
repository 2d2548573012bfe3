"""`nubis vm console --follow`: of each new console tail, only what was not shown yet."""

from __future__ import annotations

from nubis.cli.vm_console import unseen

WINDOW = 16 * 1024


def _tail(text: str) -> str:
    return text[-WINDOW:]


def test_everything_is_new_the_first_time() -> None:
    assert unseen("", "SeaBIOS\n") == "SeaBIOS\n"


def test_an_unchanged_console_has_nothing_new() -> None:
    assert unseen("login: ", "login: ") == ""
    assert unseen("", "") == ""


def test_a_growing_console_shows_what_was_added() -> None:
    assert unseen("SeaBIOS\n", "SeaBIOS\nLinux version 6.1\n") == "Linux version 6.1\n"


def test_a_sliding_window_shows_only_what_came_after_the_last_tail() -> None:
    log = "".join(f"[{n:5}] line\n" for n in range(3000))
    before, after = _tail(log[:30000]), _tail(log[:31000])

    assert unseen(before, after) == log[30000:31000]


def test_repeated_lines_are_not_taken_for_what_was_shown() -> None:
    before = "ok\n" * 10
    after = "ok\n" * 10 + "done\n"

    assert unseen(before, after) == "done\n"


def test_a_console_that_started_over_is_shown_whole() -> None:
    assert unseen("web1 login: ", "SeaBIOS (version 1.16)\n") == "SeaBIOS (version 1.16)\n"


def test_a_full_window_of_one_character_that_slid_by_one_shows_the_one_new() -> None:
    before = "=" * WINDOW
    after = "=" * (WINDOW - 1) + "x"

    assert unseen(before, after) == "x"
