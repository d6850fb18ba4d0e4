"""A local stand-in for Segment's HTTP Tracking API that enforces its contract, for the demo and the tests.

It answers `POST /v1/batch` (and its alias `/v1/import`, plus `/v1/track`) the way Segment does, keeps what
it accepted so the demo can show it, and records every request and every breach of the contract so tests
can assert that a client behaved. Faults (errors, rate limits, latency, dropped connections, outages) can
be injected at run time, in process through `sandbox.faults` or from another process through
`POST /_sandbox/faults`.

Where Segment is silent about a mistake (it answers 200 and drops), the sandbox does the same by default
but always records a `Violation`; two switches make it loud instead:

- `reject_unknown_keys=True` answers 401 to a write key it was not given (Segment answers 200 and drops
  the events later). The demo and the tests use it.
- `strict=True` (the default) answers 400 to a batch of more than 2,500 messages (Segment answers 200 and
  drops the whole batch).

Run it in another process with `python -m tui_currents.sandbox --write-key-file FILE`; it prints its
base URL on the first line of standard output. Write keys are never taken on the command line.
"""

from tui_currents.sandbox.contract import (
    MESSAGE_TYPES,
    SEGMENT_MAX_REQUEST_BYTES,
    Violation,
    ViolationKind,
)
from tui_currents.sandbox.faults import Faults
from tui_currents.sandbox.running import SandboxThread, accepted_line, main, read_write_keys, serve
from tui_currents.sandbox.server import RequestRecord, SegmentSandbox

__all__ = [
    "MESSAGE_TYPES",
    "SEGMENT_MAX_REQUEST_BYTES",
    "Faults",
    "RequestRecord",
    "SandboxThread",
    "SegmentSandbox",
    "Violation",
    "ViolationKind",
    "accepted_line",
    "main",
    "read_write_keys",
    "serve",
]
