"""A `nubis worker` that SIGKILLs itself in one label of the VM prog, the first time
that label runs: after the label did its work, before its transaction commits. That is
the worst moment to die; the label must run again, elsewhere, with its effect once.

    python -m tests.e2e.worker_faults LABEL MARKER

MARKER is a file written just before the kill (so the test knows it happened, and a
later run of the same label, in this process or another, does not die again).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from nubis.cli.services import worker
from nubis.engine.prog import Outcome
from nubis.progs.vm import VmNexus


def dying_in(label: str, marker: Path) -> None:
    """Make VmNexus's `label` kill this process once, after its work."""
    original: Callable[[VmNexus], None] = getattr(VmNexus, label)

    @functools.wraps(original)
    def doomed(self: VmNexus) -> None:
        try:
            original(self)
        except Outcome:
            if not marker.exists():
                self.session.flush()
                marker.write_text(f"{os.getpid()}\n")
                os.kill(os.getpid(), signal.SIGKILL)
            raise

    setattr(VmNexus, label, doomed)


if __name__ == "__main__":
    label, marker = sys.argv[1], Path(sys.argv[2])
    if label not in VmNexus.labels:
        sys.exit(f"VmNexus has no label {label!r}: {sorted(VmNexus.labels)}")
    dying_in(label, marker)
    worker(threads=2)
