"""`tui-currents import`: a progress line while Avro files are read, and a summary per event type at the end.

The import writes to the store like the receiver does; a running engine delivers what it queues, and
otherwise the next `tui-currents run` does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tui_currents import config
from tui_currents.control import Control
from tui_currents.outbox_home import open_outbox
from tui_currents.paths import Home
from tui_currents.sources.avro_import import ImportProgress, ImportSummary, import_path
from tui_currents.sources.ingest import Ingestor

COLUMNS = (
    "read",
    "queued",
    "duplicate",
    "not_selected",
    "anonymous",
    "unsupported",
    "not_forwardable",
    "rejected",
    "outside_time",
    "not_chosen",
)
HEADERS = (
    "Event type",
    "Read",
    "Queued",
    "Duplicate",
    "Not selected",
    "Anonymous",
    "Unsupported",
    "Not forwardable",
    "Rejected",
    "Outside time",
    "Not chosen",
)


class ProgressLine:
    """One line on stderr, redrawn at most 5 times a second (only on a terminal)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.enabled = stream.isatty()
        self._last = 0.0

    def __call__(self, p: ImportProgress) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        current = p.current.name if p.current else ""
        counts = f"files {p.files_done}/{p.files_total}  events {p.events:,}  {p.rate:,.0f}/s"
        self.stream.write(f"\r\x1b[2K{counts}  {current[:40]}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


def summary_text(summary: ImportSummary) -> str:
    """The end-of-import report: files, then a table per event type, then problems."""
    lines = [
        f"{'Dry run: nothing was queued. ' if summary.dry_run else ''}"
        f"Files: {summary.files_total} found, {summary.files_imported} read"
        f" ({summary.files_resumed} resumed), {summary.files_skipped} already imported, "
        f"{len(summary.problems)} with problems. "
        f"{summary.events_read:,} events in {summary.elapsed:.1f} s ({summary.rate:,.0f}/s).",
    ]
    rows = [
        [event_type, *(f"{getattr(c, col):,}" for col in COLUMNS)]
        for event_type, c in sorted(summary.by_type.items())
    ]
    if rows:
        total = summary.totals()
        rows.append(["total", *(f"{getattr(total, col):,}" for col in COLUMNS)])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        fmt = "  ".join([f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]])
        lines += ["", fmt.format(*HEADERS), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*r) for r in rows]
    if rows:
        total = summary.totals()
        filtered = total.not_selected + total.anonymous
        lines.append(
            f"\nRead {total.read:,} = queued {total.queued:,} + duplicate {total.duplicate:,}"
            f" + filtered {filtered:,} + unsupported {total.unsupported:,} + rejected {total.rejected:,}"
            + (f" + outside the time range {total.outside_time:,}" if total.outside_time else "")
            + (f" + not chosen {total.not_chosen:,}" if total.not_chosen else "")
            + "."
        )
    if not summary.dry_run and summary.duplicates:
        lines.append(f"{summary.duplicates:,} events were already queued or delivered: not sent again.")
    for problem in summary.problems:
        lines.append(
            f"problem: {problem.path}: {problem.message} ({problem.records_imported} records imported)"
        )
    if summary.stopped:
        lines.append(f"stopped: {summary.stopped}")
    return "\n".join(lines)


def run_import(
    home: Home,
    path: Path,
    *,
    workspace: str,
    since: float | None,
    until: float | None,
    event_types: list[str] | None,
    dry_run: bool,
) -> int:
    """Run an import and print its summary; exit code 0 when every file was read, 1 otherwise."""
    home.ensure()
    cfg = config.load(home)
    cfg.workspace(workspace)  # KeyError with a readable message for an unknown workspace
    # A member's events go to the cluster's queue; the imported-files ledger stays in the home's own file.
    store = open_outbox(home, synchronous=cfg.durability.upper())
    progress = ProgressLine()
    try:
        summary = import_path(
            path,
            workspace,
            Ingestor(cfg, store),
            since=since,
            until=until,
            event_types=event_types,
            dry_run=dry_run,
            progress=progress,
            ledger_file=home.store_file,
        )
    finally:
        progress.done()
        store.close()
    if summary.files_total == 0:
        print(
            f"tui-currents: no Avro file (.avro) in {path}: only Avro files, as Currents exports them, are "
            "read; nothing was imported",
            file=sys.stderr,
        )
        return 2
    print(summary_text(summary))
    if not dry_run and summary.queued:
        ctl = Control(home.store_file)
        presence = ctl.presence()
        ctl.close()
        if presence is None or not presence.alive():
            print(f"{summary.queued:,} events are queued; they are delivered when `tui-currents run` starts.")
    return 0 if summary.ok else 1
