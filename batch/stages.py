"""Where a run's time goes: wall and CPU seconds per stage, summed over batches.

The local engine reads, scores and writes on threads of their own, so a
stage's wall seconds are the time spent in it by the thread that runs it
(they overlap: their sum exceeds the run's wall time when threads ran at
once), and its CPU seconds are that thread's CPU time (`time.thread_time`),
so each stage is charged only for its own work. `make bench-batch` records
them (reports/bench-batch-<name>.{md,json}).
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from collections.abc import Iterator


class Stages:
    """Wall and CPU seconds per named stage, safe to add to from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, wall: bool = True, cpu: bool = True) -> Iterator[None]:
        """Time the block as `name`. wall=False where another thread already
        counts the stage's wall time (ONNX Runtime runs on a pool while the
        caller waits); cpu=False for the waiting caller's side of it."""
        w, c = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            w, c = time.perf_counter() - w, time.thread_time() - c
            with self._lock:
                if wall:
                    self.wall[name] = self.wall.get(name, 0.0) + w
                if cpu:
                    self.cpu[name] = self.cpu.get(name, 0.0) + c

    def report(self) -> dict[str, dict[str, float]]:
        """{stage: {"wall": s, "cpu": s}}, in the order the stages were first timed."""
        names = list(dict.fromkeys([*self.wall, *self.cpu]))
        return {n: {"wall": round(self.wall.get(n, 0.0), 3), "cpu": round(self.cpu.get(n, 0.0), 3)} for n in names}


def process_cpu() -> float:
    """CPU seconds (user + system) of this process so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
