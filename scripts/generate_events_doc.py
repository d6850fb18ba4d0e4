"""Write docs/EVENTS.md, the event reference table, from the catalog and the mapping rules.

    .venv/bin/python scripts/generate_events_doc.py

tests/test_events_doc.py fails when the committed file differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui_currents.events_doc import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
