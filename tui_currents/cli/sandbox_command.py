"""`tui-currents sandbox`: the local Segment stand-in, run by hand."""

from __future__ import annotations

import argparse

from tui_currents.cli.common import Subparsers


def cmd_sandbox(args: argparse.Namespace) -> int:
    """`tui-currents sandbox`: the local Segment stand-in, for trying a connector by hand."""
    from tui_currents import sandbox

    print(
        "A local Segment stand-in: point a connector at it (--endpoint, or Custom endpoint in the editor); "
        "each second it says what it accepted. Ctrl+C stops it. Its address:",
        flush=True,
    )
    return sandbox.serve(args, report_every=1.0)


def register(sub: Subparsers) -> None:
    """Add `sandbox`."""
    sand = sub.add_parser(
        "sandbox", help="run a local Segment stand-in on 127.0.0.1 and show what it accepts (for testing)"
    )
    from tui_currents.sandbox_options import add_arguments as sandbox_arguments

    sandbox_arguments(sand)
    sand.set_defaults(func=cmd_sandbox)
