"""The engine: durable state machines (strands running progs), knowing nothing of VMs.

See `prog` for writing a state machine, `strand` for starting and signalling one,
`dispatcher` and `lease` for how a worker runs it, `worker` for the process.
"""

from nubis.engine.prog import Prog, label
from nubis.engine.strand import incr, retry, start

__all__ = ["Prog", "incr", "label", "retry", "start"]
