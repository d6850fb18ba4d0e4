"""Save an SVG of every screen of the real app into screenshots/, driven headless with demo data.

    .venv/bin/python scripts/export_screenshots.py [--out screenshots] [--seconds 4]

A temporary home gets the demo connector; the app runs its engine in-process with the local Segment
sandbox (nothing leaves the machine) and the demo generator, so the screens show live figures. The sandbox
is told to refuse a few messages so the dead letters screen has something to show. Screens are captured
with `save_screenshot`: the pictures are produced by the app, never drawn by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tui_currents.demo_setup import DEMO_CONNECTOR, demo_secrets  # noqa: E402
from tui_currents.paths import Home  # noqa: E402
from tui_currents.tui.app import CurrentsApp  # noqa: E402
from tui_currents.tui.backend import Backend  # noqa: E402

SIZE = (100, 32)
SMALL = (80, 24)
# (file name, keys pressed from the connectors screen to get there, terminal size, theme)
SHOTS = (
    ("connectors", (), SIZE, None),
    ("editor", ("e",), SIZE, None),
    ("tail", ("t",), SIZE, None),
    ("message", ("t", "up", "enter"), SIZE, None),
    ("health", ("h",), SIZE, None),
    ("dead-letters", ("x",), SIZE, None),
    ("help", ("f1",), SIZE, None),
    ("palette", ("ctrl+p",), SIZE, None),
    ("connectors-80x24", (), SMALL, None),
    ("tail-80x24", ("t",), SMALL, None),
    ("connectors-light", (), SIZE, "currents-light"),
    ("health-light", ("h",), SIZE, "currents-light"),
)


async def wait_for(condition, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def capture(out: Path, seconds: float, rate: float) -> list[Path]:
    from tui_currents.engine import EngineOptions

    with tempfile.TemporaryDirectory(prefix="tui-currents-shots-") as folder:
        home = Home.at(folder).ensure()
        secrets = demo_secrets(home)
        options = EngineOptions(demo=True, demo_rate=rate, start_receiver=False)
        backend = Backend(home, secrets, demo=True, demo_rate=rate, engine_options=options)
        app = CurrentsApp(backend)
        saved: list[Path] = []
        async with app.run_test(size=SIZE) as pilot:
            if not await wait_for(lambda: app.backend_ready, 30):
                raise SystemExit("the app did not start within 30 s")
            engine = backend.engine
            if engine is None:
                raise SystemExit(f"the engine did not start: {backend.engine_problem}")
            if engine.sandbox is not None:
                # A few refusals, so that the dead letters screen has reasons to show.
                engine.sandbox.faults.update(next_statuses=[422, 422])
            await asyncio.sleep(seconds)  # let the demo traffic fill the counters and the tail
            for name, keys, size, theme in SHOTS:
                app.show_home()
                await pilot.resize_terminal(*size)
                app.set_theme(theme or "currents-dark", remember=False)
                await pilot.pause(0.2)
                for key in keys:
                    await pilot.press(key)
                    await pilot.pause(0.3)
                await app.workers.wait_for_complete()
                await pilot.pause(0.6)
                app.clear_notifications()
                await pilot.pause(0.1)
                path = Path(app.save_screenshot(filename=f"{name}.svg", path=str(out)))
                saved.append(path)
                while len(app.screen_stack) > 1:
                    app.pop_screen()
                    await pilot.pause(0.1)
        return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--seconds", type=float, default=4.0, help="demo traffic before the first picture")
    parser.add_argument("--rate", type=float, default=200.0, help="demo events per second")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    saved = asyncio.run(capture(args.out, args.seconds, args.rate))
    for path in saved:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    print(f"{len(saved)} screenshots of {DEMO_CONNECTOR!r} and friends written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
