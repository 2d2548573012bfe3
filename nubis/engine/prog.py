"""Progs: durable state machines written as classes whose methods are labels.

A label is a method marked `@label`. The worker runs exactly one label at a time
and the label ends with one flow verb, which the worker stores in the same
transaction as everything the label wrote:

    hop(label)              go to another label now
    nap(seconds)            run this label again later (a semaphore wakes it early)
    exit(value)             done
    push(prog, frame, then) call a sub-prog; when it pops, continue at `then`
    pop(value)              return `value` to the caller (at the bottom: exit)
    reap(then)              once every budded child has exited, hop to `then`

`bud(prog, frame)` starts a child strand and lets the label go on. Semaphores are
read once when the label starts: `when(name)` answers from that snapshot and
`decr(name)` removes only what the snapshot saw, so a request that arrives during
the label is neither lost nor half-handled.

A label may run more than once (a worker can die after its side effects but before
its commit), so every label must be idempotent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, NoReturn, TypeVar
from uuid import UUID

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from nubis.choices import StrandStatus
from nubis.engine import strand
from nubis.models.engine import Semaphore, Strand

F = TypeVar("F", bound=Callable[..., None])
_LABEL_MARK = "__nubis_label__"


def label(fn: F) -> F:
    """Mark a method as a label of its prog."""
    setattr(fn, _LABEL_MARK, True)
    return fn


class Outcome(BaseException):
    """How a label ended. A BaseException, so a label's `except Exception` lets it pass."""


@dataclass
class Hop(Outcome):
    label: str


@dataclass
class Nap(Outcome):
    seconds: float


@dataclass
class Exit(Outcome):
    value: Any


@dataclass
class Push(Outcome):
    prog: str
    frame: dict[str, Any]
    then: str


@dataclass
class Pop(Outcome):
    value: Any


@dataclass(frozen=True)
class SemaphoreSnapshot:
    """The semaphores of a strand as they were when the label started."""

    rows: Sequence[tuple[UUID, str]] = ()

    def names(self) -> set[str]:
        return {name for _, name in self.rows}

    def ids(self, name: str) -> list[UUID]:
        return [sid for sid, n in self.rows if n == name]


@dataclass
class LabelContext:
    """What a prog instance sees while one of its labels runs."""

    session: Session
    strand_id: UUID
    frame: dict[str, Any]
    retval: Any = None
    semaphores: SemaphoreSnapshot = field(default_factory=SemaphoreSnapshot)


class Prog:
    """Base of every prog. Subclasses define labels; `start` is the first by default."""

    labels: ClassVar[frozenset[str]] = frozenset()
    start_label: ClassVar[str] = "start"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.labels = frozenset(
            name for name in dir(cls) if getattr(getattr(cls, name, None), _LABEL_MARK, False)
        )

    def __init__(self, context: LabelContext) -> None:
        self._context = context

    @classmethod
    def name(cls) -> str:
        """The name strands store to find this prog again."""
        return f"{cls.__module__}:{cls.__qualname__}"

    @property
    def session(self) -> Session:
        return self._context.session

    @property
    def strand_id(self) -> UUID:
        return self._context.strand_id

    @property
    def frame(self) -> dict[str, Any]:
        """This prog's own data; saved whenever a label ends with a flow verb."""
        return self._context.frame

    @property
    def retval(self) -> Any:
        """What the last sub-prog this prog pushed returned with `pop`."""
        return self._context.retval

    # flow verbs

    def hop(self, label: str) -> NoReturn:
        self._check_label(label)
        raise Hop(label)

    def nap(self, seconds: float) -> NoReturn:
        if seconds < 0:
            raise ValueError(f"cannot nap for {seconds} s")
        raise Nap(seconds)

    def exit(self, value: Any = None) -> NoReturn:
        raise Exit(value)

    def push(self, prog: type[Prog], frame: dict[str, Any] | None = None, *, then: str) -> NoReturn:
        self._check_label(then)
        raise Push(prog.name(), dict(frame or {}), then)

    def pop(self, value: Any = None) -> NoReturn:
        raise Pop(value)

    def bud(self, prog: type[Prog], frame: dict[str, Any] | None = None) -> UUID:
        """Start a child strand; it begins running once this label commits."""
        return strand.start(self.session, prog, frame, parent_id=self.strand_id)

    def reap(self, then: str, *, nap: float = 60.0) -> NoReturn:
        """Collect exited children's values into `frame["reaped"]`; hop to `then` when
        none is left running, else nap (a child that exits wakes this strand).
        """
        self._check_label(then)
        done = self.session.execute(
            select(Strand.id, Strand.exitval)
            .where(
                Strand.parent_id == self.strand_id,
                Strand.status == StrandStatus.EXITED,
                Strand.reaped.is_(False),
            )
            .order_by(Strand.id)
        ).all()
        if done:
            self.session.execute(
                update(Strand).where(Strand.id.in_([d.id for d in done])).values(reaped=True)
            )
            self.frame.setdefault("reaped", []).extend(d.exitval for d in done)
        running = self.session.scalar(
            select(
                exists().where(
                    Strand.parent_id == self.strand_id, Strand.status != StrandStatus.EXITED
                )
            )
        )
        if running:
            self.nap(nap)
        self.hop(then)

    # semaphores

    def when(self, name: str) -> bool:
        """Whether `name` was signalled before this label started."""
        return name in self._context.semaphores.names()

    def decr(self, name: str) -> None:
        """Consume the `name` signals this label saw (newer ones stay)."""
        ids = self._context.semaphores.ids(name)
        if ids:
            self.session.execute(delete(Semaphore).where(Semaphore.id.in_(ids)))

    def _check_label(self, name: str) -> None:
        if name not in self.labels:
            raise ValueError(f"{self.name()} has no label {name!r}")


@cache
def resolve(name: str) -> type[Prog]:
    """The prog class a strand names (`module:Qualname`)."""
    module_name, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, Prog)):
        raise TypeError(f"{name} is not a prog")
    return target
