"""A steady, checked load at a known fraction of capacity, for the chaos run
and the soak: the capacity is single-record predicts through nginx under wrk
(loadtest/wrk.lua, as `make bench` measures it), and the load is
serve-go/cmd/skl2go-load at a fixed rate, every answer checked, until it is
stopped.

    capacity = paced.capacity(url, bodies, seconds=5)
    load = paced.Load(url, bodies, rate=capacity["rps"] / 3, workers=256, log=work / "load.log")
    ...  # faults
    result = load.stop()  # skl2go-load's {"load": …} line: requests, errors by kind, versions, latency
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from loadtest import bench, samples
from topology import ROOT

LOAD = ROOT / "serve-go" / "bin" / "skl2go-load"
# How long a Load sends unless told: stop() ends it long before, and a
# caller that never gets to stop() (a failed test) leaves no process beyond.
MAX_DURATION = "20m"


def bodies(path: Path, held_out: Path, count: int = 500) -> Path:
    """A file of single-record predict bodies of held-out trips (written once)."""
    if not path.exists():
        samples.write_bodies(path, samples.request_bodies(samples.held_out_features(held_out), 1, count))
    return path


def capacity(url: str, bodies: Path, seconds: int, model: str) -> dict:
    """wrk as `make bench` runs it (2 threads, 32 connections) on single-record
    predicts through nginx for `seconds`: {"rps", "p99_ms", "seconds", "failures"}."""
    target = bench.Target("go_nginx", url, None, lambda: [])
    run = bench.wrk_run(target, 1, bench.run_wrk(target, bench.Settings(), bodies, seconds, model), 0.0)
    return {"rps": run["rps"], "p99_ms": run["p99_ms"], "seconds": seconds, "failures": run["failures"],
            "wrk_threads": bench.Settings().wrk_threads, "wrk_connections": bench.Settings().wrk_connections}


class Load:
    """skl2go-load sending bodies to addr at rate requests/s (REST, or gRPC)
    until stop(), or for duration when given."""

    def __init__(self, addr: str, bodies: Path, rate: float, workers: int, log: Path, model: str,
                 protocol: str = "rest", duration: str = MAX_DURATION, extra: tuple[str, ...] = ()):
        self.rate = rate
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [str(LOAD), "-protocol", protocol, "-addr", addr, "-model", model, "-bodies", str(bodies),
             "-rate", f"{rate:.0f}", "-workers", str(workers), "-duration", duration, *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def stop(self, timeout: float = 60) -> dict:
        """SIGTERM: skl2go-load stops sending, waits for the requests in
        flight and prints its line. Its result (see serve-go/cmd/skl2go-load)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> dict:
        try:
            stdout, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, _ = self.process.communicate()
        self.log.close()
        line = next((line for line in stdout.splitlines() if line.startswith('{"load":')), None)
        if line is None:
            raise RuntimeError(f"skl2go-load printed no result (exit {self.process.returncode}): "
                               f"{Path(self.log.name).read_text()[-2000:]}")
        return json.loads(line)["load"]


def failures(result: dict) -> int:
    return sum(result["errors"].values())


def status_5xx(result: dict) -> int:
    """The answers with a 5xx status among a result's errors."""
    return sum(n for kind, n in result["errors"].items() if kind.startswith("status 5"))


def error_lines(result: dict) -> dict[str, int]:
    """Each kind of error with its first message, and how many."""
    return {f"{kind}: {result['first_errors'].get(kind, '')}"[:300]: n for kind, n in result["errors"].items()}
