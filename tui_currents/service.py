"""The headless service (`tui-currents run`): the engine, its metrics listener, systemd's notifications and
the signals that stop it, in one asyncio run."""

from __future__ import annotations

import asyncio
import logging
import signal

from tui_currents.engine import Engine
from tui_currents.metrics import ServiceMetrics
from tui_currents.systemd import Notifier

log = logging.getLogger("tui_currents.service")


async def run_service(
    engine: Engine,
    *,
    metrics_port: int | None = None,
    notifier: Notifier | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Start the engine (and /metrics when enabled), tell systemd it is ready, keep its watchdog fed while
    healthy, and stop cleanly on SIGTERM or SIGINT (or when `stop` is set)."""
    notifier = notifier or Notifier()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stop.is_set():
            notifier.stopping()
            stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    metrics = ServiceMetrics(engine.home)
    engine.metrics = metrics
    await engine.start()
    watchdog: asyncio.Task | None = None
    try:
        loaded = engine.config
        assert loaded is not None  # start() loaded it, or raised
        settings = loaded.metrics
        if settings.enabled or metrics_port is not None:
            port = settings.port if metrics_port is None else metrics_port
            try:
                await asyncio.to_thread(metrics.serve, settings.host, port)
            except OSError as exc:
                # Forwarding matters more than its metrics: said once, and the service carries on.
                log.error("%s; forwarding carries on without metrics", exc.strerror or exc)
        notifier.ready(f"forwarding; receiver {engine.receiver_url or 'off'}")
        interval = notifier.watchdog_interval()
        if interval:
            watchdog = asyncio.create_task(_feed_watchdog(engine, notifier, interval), name="watchdog")
        await stop.wait()
    finally:
        if not stop.is_set():
            notifier.stopping()
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        await engine.stop()
        await asyncio.to_thread(metrics.stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _feed_watchdog(engine: Engine, notifier: Notifier, interval: float) -> None:
    """WATCHDOG=1 while the loop turns and the engine's own tasks live; silence lets systemd restart it."""
    said = False
    while True:
        if engine.healthy():
            notifier.watchdog()
            said = False
        elif not said:
            said = True
            log.error("the engine is not healthy; systemd's watchdog is no longer fed (it will restart it)")
        await asyncio.sleep(interval)
