"""What a benchmark's processes use, read from /proc: CPU seconds of a service's processes by module,
peak RSS of this process, and the summed PSS (shared pages counted once) of a process tree."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path


def service_cpu(this: str = "engine") -> dict[str, float]:
    """CPU seconds (user + system) so far of this process (named `this`: the engine, with the receiver,
    the commits, and delivery when it runs in the engine's loop) and of its tui_currents child processes,
    by module."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {this: time.process_time()}
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if fields[1] != me or b"-m" not in argv:
            continue
        module = argv[argv.index(b"-m") + 1].decode()
        if module.startswith("tui_currents.") and module != "tui_currents.sandbox":  # not the stand-in
            name = module.rsplit(".", 1)[1]
            found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def describe_cpu(cpu: dict[str, float]) -> str:
    """`engine 30, mapping_worker 18, ... = total` in us of CPU per delivered event."""
    parts = ", ".join(f"{name} {us:.0f}" for name, us in cpu.items())
    return f"{parts}; total {sum(cpu.values()):.0f} us/event"


def peak_rss_mb() -> float:
    """This process's peak RSS. Read from VmHWM, not getrusage: ru_maxrss survives exec, so a child
    forked from a big parent would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def service_pids(root: int) -> list[int]:
    """`root` and every live process below it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [root], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def pss_mb(pid: int) -> float:
    """A process's proportional set size (shared pages divided among their users), from smaps_rollup."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PssWatch:
    """Samples the summed PSS of a service's processes (the engine and everything below it) in a thread."""

    def __init__(self, root: int, every: float = 0.25):
        self.root = root
        self.every = every
        self.peak = 0.0
        self.peak_parts: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> float:
        parts = [pss_mb(pid) for pid in service_pids(self.root)]
        total = sum(parts)
        if total > self.peak:
            self.peak, self.peak_parts = total, sorted(parts, reverse=True)
        return total

    def __enter__(self) -> PssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
