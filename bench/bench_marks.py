"""What a lease, a request body and a delivered mark cost per message, in the store alone. Prints figures.

40,000 demo events are committed in bodies of 100 (as the receiver's requests arrive), then leased in
batches of 100 and of 500 messages; each batch's request body is built and the batch marked delivered, as
delivery does. Prints microseconds of CPU per message for each step and the bytes the marks wrote per
message byte (this process's write() calls, so the store's checkpoints made during a mark count too).

    .venv/bin/python bench/bench_marks.py [--events N] [--durability FULL|NORMAL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_delivery import CONNECTOR, WORKSPACE, bench_config, make_events, written_bytes

from tui_currents.delivery import batch_body
from tui_currents.sources.ingest import Ingestor
from tui_currents.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--durability", default="NORMAL", choices=["FULL", "NORMAL"])
    args = parser.parse_args()
    events = make_events(args.events)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "marks.db", synchronous=args.durability)
        ingestor = Ingestor(bench_config("http://127.0.0.1:9"), store)
        for start in range(0, len(events), 100):
            ingestor.ingest(WORKSPACE, events[start : start + 100], source="bench")
        for batch in (100, 500):
            lease = body = mark = 0.0
            messages = message_bytes = marked_bytes = 0
            while messages < args.events // 2:
                c0 = time.process_time()
                rows = store.lease(CONNECTOR, max_messages=batch, max_bytes=490_000, lease_seconds=60)
                c1 = time.process_time()
                if not rows:
                    break
                batch_body([row.body for row in rows], "k" * 32, "2026-01-01T00:00:00.000Z")
                c2 = time.process_time()
                w0 = written_bytes()
                store.delivered(CONNECTOR, [row.seq for row in rows])
                marked_bytes += written_bytes() - w0
                c3 = time.process_time()
                lease, body, mark = lease + c1 - c0, body + c2 - c1, mark + c3 - c2
                messages += len(rows)
                message_bytes += sum(row.bytes for row in rows)
            per = 1e6 / max(1, messages)
            print(
                f"batches of {batch}: {messages:,} messages; CPU per message: lease {lease * per:.2f} us, "
                f"request body {body * per:.2f} us, delivered mark {mark * per:.2f} us; "
                f"the marks wrote {marked_bytes / max(1, message_bytes):.2f} bytes per message byte"
            )
        store.close()


if __name__ == "__main__":
    main()
