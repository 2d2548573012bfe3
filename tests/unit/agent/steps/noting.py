"""A step for tests that notes what it is asked and answers as told."""

from __future__ import annotations

from nubis.agent.steps.step import DONE, Outcome, Step, VmPass
from nubis.protocol import VmSpec


class Noting(Step):
    """A step that notes each run in `runs` and answers `outcomes` in turn (an
    exception is raised); the last one again once they run out."""

    name = "noting"

    def __init__(self, name: str, runs: list[str], *outcomes: Outcome | Exception) -> None:
        self.name = name
        self.runs = runs
        self.outcomes = list(outcomes) or [DONE]

    def run(self, spec: VmSpec, vm: VmPass) -> Outcome:
        self.runs.append(self.name)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def forget(self, vm_id: str) -> None:
        self.runs.append(f"{self.name} forgets {vm_id}")
