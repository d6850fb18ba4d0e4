"""The local Segment stand-in's command-line options, apart from the stand-in itself so that building the
`tui-currents` parser does not import its web server."""

from __future__ import annotations

import argparse

WRITE_KEYS_ENV = "TUI_CURRENTS_SANDBOX_WRITE_KEYS"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sandbox's options (for `python -m tui_currents.sandbox` and `tui-currents sandbox`)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--write-key-file",
        help=f"file with the accepted write keys, one a line (else ${WRITE_KEYS_ENV}, comma-separated; "
        "with neither, any key is accepted)",
    )
    parser.add_argument("--reject-unknown-keys", action="store_true", help="answer 401 to other keys")
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="answer 200 and drop batches over 2,500 messages, as Segment does",
    )
    parser.add_argument("--keep", type=int, default=10_000, help="accepted messages kept for viewing")
    parser.add_argument("--seed", type=int, help="seed for the random fault draws")
