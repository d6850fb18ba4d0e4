"""`tui-currents run|demo` and the app itself: the commands that start an engine."""

from __future__ import annotations

import argparse
import os

from tui_currents import config
from tui_currents.cli.common import (
    EngineRunning,
    Subparsers,
    home_of,
    open_secrets,
    setup_logging,
)
from tui_currents.paths import Home


def cmd_run(args: argparse.Namespace) -> int:
    from tui_currents.engine import Engine, EngineOptions
    from tui_currents.outbox_home import open_outbox
    from tui_currents.service import run_service

    home, secrets = engine_home_and_secrets(args)
    config.load(home)  # a config with problems stops here, in one message, before anything starts
    # A damaged, empty or read-only store is said in one line (StoreUnavailable) before the engine starts.
    open_outbox(home).close()
    setup_logging(home, verbose=args.verbose, to_stderr=True, log_format=args.log_format)
    options = EngineOptions(
        receiver_host=args.host,
        receiver_port=args.port,
        demo=args.demo,
        demo_rate=args.demo_rate if args.demo else None,
    )
    engine = Engine(home, secrets, options)
    import asyncio  # here, not at start-up: the event loop costs every other command's start-up

    asyncio.run(run_service(engine, metrics_port=args.metrics_port))
    return 0


def engine_home_and_secrets(args: argparse.Namespace):
    if getattr(args, "demo", False) or args.command == "demo":
        from tui_currents import demo_setup
        from tui_currents.demo_setup import default_demo_home, demo_secrets

        home = Home.resolve(args.home or os.environ.get("TUI_CURRENTS_HOME") or default_demo_home())
        if getattr(args, "reset", False):
            _reset_demo(home)
        fresh = not home.config_file.exists()
        home.ensure()
        if fresh:  # only a home the demo itself fills is ever marked as the demo's
            demo_setup.mark_demo_home(home)
        return home, demo_secrets(home)
    home = home_of(args)
    home.ensure()
    return home, open_secrets(home, interactive=True)


def _reset_demo(home: Home) -> None:
    """`demo --reset`: empty the demo home, unless the demo runs there now or it is not a demo home."""
    from tui_currents import demo_setup

    if not home.root.exists():
        return
    if home.store_file.exists() and demo_setup.is_demo_home(home):
        from tui_currents.control import Control

        ctl = Control(home.store_file)
        try:
            presence = ctl.presence()
        finally:
            ctl.close()
        if presence and presence.alive():
            raise EngineRunning(f"the demo runs in {home.root} now (pid {presence.pid}); quit it, then reset")
    demo_setup.reset(home)  # a ValueError (exit 2) for a home that is not the demo's


def cmd_tui(args: argparse.Namespace) -> int:
    from tui_currents.tui.app import run_app

    home, secrets = engine_home_and_secrets(args)
    setup_logging(home, verbose=getattr(args, "verbose", False), to_stderr=False)
    demo = args.command == "demo"
    return run_app(home, secrets, demo=demo, demo_rate=getattr(args, "demo_rate", None))


def register(sub: Subparsers) -> None:
    """Add `demo` and `run`."""
    demo = sub.add_parser("demo", help="open the TUI with a demo workspace and a local Segment sandbox")
    demo.add_argument("--demo-rate", type=float, default=50.0, help="demo events per second (default 50)")
    demo.add_argument("--reset", action="store_true", help="empty the demo home first, to start afresh")
    demo.set_defaults(func=cmd_tui)

    run = sub.add_parser("run", help="run the engine headless (receiver and delivery) until SIGINT/SIGTERM")
    run.add_argument(
        "--demo", action="store_true", help="demo workspace, generator and local Segment sandbox"
    )
    run.add_argument("--demo-rate", type=float, default=50.0, help="demo events per second (default 50)")
    run.add_argument("--host", help="receiver address for this run (default from config: 127.0.0.1)")
    run.add_argument("--port", type=int, help="receiver port for this run")
    run.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on this port for this run (default from config: 9750; 0 picks one)",
    )
    run.add_argument(
        "--log-format", choices=["human", "json"], help="log lines as text or JSON objects (default: [logs])"
    )
    run.set_defaults(func=cmd_run)
