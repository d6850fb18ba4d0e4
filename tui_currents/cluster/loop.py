"""A private asyncio event loop in a daemon thread, for calling the asyncio NATS client from sync code.

The outbox contract is synchronous (the engine calls it from threads); nats-py is asyncio. Every call
runs a coroutine on this loop and waits for it with a deadline: a cluster that lost its quorum must
surface as an error the caller can act on, never as a thread stuck forever.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread until `stop`."""

    def __init__(self, name: str = "nats-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """The result of `coro` run on the loop; raises TimeoutError (the coroutine is cancelled) when it
        takes longer than `timeout` seconds, or whatever it raised."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():  # the coroutine's own timeout (the same class since Python 3.11)
                raise
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:g} s") from None

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop, stop it and wait (bounded) for its thread to end."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(TimeoutError, RuntimeError):
            self.call(_cancel_the_rest(), timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_the_rest() -> None:
    """Cancel every other task on the running loop and wait for them to end (client loops, watchers)."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
