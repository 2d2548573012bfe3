"""Progs: labels are collected per class, flow verbs refuse what cannot work, and a
strand's stored prog name finds the class again.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from nubis.engine.prog import (
    Exit,
    Hop,
    LabelContext,
    Nap,
    Pop,
    Prog,
    Push,
    label,
    resolve,
)
from nubis.ids import new_id


class Greeter(Prog):
    @label
    def start(self) -> None:
        self.hop("wave")

    @label
    def wave(self) -> None:
        self.exit("waved")

    def helper(self) -> str:
        return "not a label"


class LoudGreeter(Greeter):
    @label
    def shout(self) -> None:
        self.hop("start")


class Empty(Prog):
    pass


class Holder:
    class Nested(Prog):
        @label
        def start(self) -> None:
            self.exit()


NOT_A_PROG = 42


class NotAProg:
    @label
    def start(self) -> None:
        pass


def _greeter(frame: dict[str, Any] | None = None) -> Greeter:
    """An instance for verbs that need no database."""
    context = LabelContext(session=None, strand_id=new_id(), frame=frame or {})  # type: ignore[arg-type]
    return Greeter(context)


def test_labels_are_the_marked_methods() -> None:
    assert Greeter.labels == frozenset({"start", "wave"})


def test_a_subclass_inherits_labels_and_adds_its_own() -> None:
    assert LoudGreeter.labels == frozenset({"start", "wave", "shout"})
    assert Greeter.labels == frozenset({"start", "wave"})


def test_a_prog_without_labels_has_none() -> None:
    assert Empty.labels == frozenset()


def test_name_is_module_and_qualified_name() -> None:
    assert Greeter.name() == f"{__name__}:Greeter"
    assert Holder.Nested.name() == f"{__name__}:Holder.Nested"


def test_hop_to_a_label_raises_the_hop() -> None:
    with pytest.raises(Hop) as caught:
        _greeter().hop("wave")
    assert caught.value.label == "wave"


def test_hop_to_an_unknown_label_is_refused() -> None:
    with pytest.raises(ValueError, match="has no label 'nowhere'"):
        _greeter().hop("nowhere")


def test_hop_to_a_plain_method_is_refused() -> None:
    with pytest.raises(ValueError, match="has no label 'helper'"):
        _greeter().hop("helper")


def test_push_with_an_unknown_then_is_refused() -> None:
    with pytest.raises(ValueError, match="has no label 'missing'"):
        _greeter().push(Holder.Nested, {"n": 1}, then="missing")


def test_push_names_the_sub_prog_and_copies_its_frame() -> None:
    frame = {"n": 1}
    with pytest.raises(Push) as caught:
        _greeter().push(Holder.Nested, frame, then="wave")
    assert caught.value == Push(Holder.Nested.name(), {"n": 1}, "wave")
    assert caught.value.frame is not frame


def test_nap_for_a_negative_time_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot nap for -1"):
        _greeter().nap(-1)


def test_nap_for_zero_seconds_is_allowed() -> None:
    with pytest.raises(Nap) as caught:
        _greeter().nap(0)
    assert caught.value.seconds == 0


def test_exit_and_pop_carry_their_value() -> None:
    with pytest.raises(Exit) as exited:
        _greeter().exit({"done": True})
    assert exited.value.value == {"done": True}
    with pytest.raises(Pop) as popped:
        _greeter().pop(7)
    assert popped.value.value == 7


def test_flow_verbs_pass_through_except_exception() -> None:
    prog = _greeter()
    with pytest.raises(Hop):
        try:
            prog.hop("wave")
        except Exception:  # a label's own error handling must not swallow its hop
            pytest.fail("a flow verb was caught as an Exception")


def test_a_prog_sees_its_context() -> None:
    strand_id: UUID = new_id()
    context = LabelContext(session=None, strand_id=strand_id, frame={"a": 1}, retval=5)  # type: ignore[arg-type]
    prog = Greeter(context)
    assert prog.strand_id == strand_id
    assert prog.frame == {"a": 1}
    assert prog.retval == 5
    assert not prog.when("destroy")


def test_resolve_finds_a_prog_by_its_name() -> None:
    assert resolve(Greeter.name()) is Greeter
    assert resolve(LoudGreeter.name()) is LoudGreeter


def test_resolve_finds_a_nested_prog() -> None:
    assert resolve(Holder.Nested.name()) is Holder.Nested


@pytest.mark.parametrize("target", ["NOT_A_PROG", "NotAProg", "Holder", "label"])
def test_resolve_refuses_a_name_that_is_not_a_prog(target: str) -> None:
    with pytest.raises(TypeError, match="is not a prog"):
        resolve(f"{__name__}:{target}")


def test_resolve_refuses_a_missing_attribute() -> None:
    with pytest.raises(AttributeError):
        resolve(f"{__name__}:Nobody")


def test_resolve_refuses_a_missing_module() -> None:
    with pytest.raises(ModuleNotFoundError):
        resolve("tests.unit.engine.no_such_module:Greeter")
