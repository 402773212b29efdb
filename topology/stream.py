"""The Go stream consumers (serve-go/bin/skl2go-stream), one per model, each
in the background with its pid and log under the state directory (STATE,
default run/): run/stream-<name>.pid, run/logs/stream-<name>.log.

    python -m topology.stream start --name trip_duration --metrics 127.0.0.1:9180 [skl2go-stream flags…]
    python -m topology.stream stop [--name trip_duration]   # every consumer without --name
    python -m topology.stream status

start converges: a running consumer of that model is left alone; a new one
is ready once its /readyz answers. stop sends SIGTERM (the consumer finishes
its batch and commits its offsets), SIGKILL after a timeout. `python -m
topology down` (make down) stops every consumer too.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from topology import processes
from topology.probe import wait_http

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "serve-go" / "bin" / "skl2go-stream"
NAME = "skl2go-stream"  # in every consumer's command line


class StreamError(RuntimeError):
    """A consumer could not be started; the message says why."""


def say(message: str) -> None:
    print(f"[stream] {message}", flush=True)


def pidfile(state: Path, name: str) -> Path:
    return state / f"stream-{name}.pid"


def pid(state: Path, name: str) -> int | None:
    """The pid of the consumer of model `name` if it runs."""
    return processes.alive(pidfile(state, name), NAME)


def start(state: Path, name: str, args: list[str], metrics: str, timeout: float = 120) -> None:
    """Start the consumer of model `name` (args: more skl2go-stream flags)
    unless it runs, with /metrics and /readyz on `metrics`; wait until ready."""
    if (running := pid(state, name)) is not None:
        say(f"consumer {name} already running (pid {running})")
        return
    if not BINARY.is_file():
        raise StreamError(f"{BINARY} is missing: run `make build-stream`")
    log = state / "logs" / f"stream-{name}.log"
    started = processes.spawn([str(BINARY), "--model", name, "--metrics-addr", metrics, *args], log, dict(os.environ))
    pidfile(state, name).write_text(str(started))
    try:
        wait_http(f"http://{metrics}/readyz", timeout, alive=lambda: processes.running(started), what=f"consumer {name}")
    except (RuntimeError, TimeoutError) as err:
        processes.stop(started, signal.SIGKILL, timeout=5)
        pidfile(state, name).unlink(missing_ok=True)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise StreamError(f"consumer {name} did not become ready ({err}); {log}:\n{tail}") from None
    say(f"consumer {name} ready (pid {started}), metrics on http://{metrics}/metrics; log {log}")


def stop(state: Path, name: str | None = None, timeout: float = 30) -> None:
    """Stop the consumer of `name`, or every consumer, and remove pid files."""
    for path in sorted(state.glob(f"stream-{name or '*'}.pid")):
        model = path.stem.removeprefix("stream-")
        if (running := processes.alive(path, NAME)) is not None:
            processes.stop(running, signal.SIGTERM, timeout, say=say)
            say(f"consumer {model} stopped (pid {running})")
        path.unlink(missing_ok=True)


def status(state: Path) -> int:
    found = 0
    for path in sorted(state.glob("stream-*.pid")):
        if (running := processes.alive(path, NAME)) is not None:
            say(f"consumer {path.stem.removeprefix('stream-')} running (pid {running})")
            found += 1
    if not found:
        say(f"no consumer running from {state}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topology.stream", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--name", help="the model the consumer scores with (start: required)")
    parser.add_argument("--metrics", default="127.0.0.1:9180", help="start: the consumer's /metrics and /readyz address")
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("STATE", "run")))
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "start":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    state = args.state.resolve()
    try:
        if args.command == "start":
            if not args.name:
                parser.error("start needs --name")
            start(state, args.name, rest, args.metrics)
        elif args.command == "stop":
            stop(state, args.name)
        else:
            return status(state)
    except StreamError as err:
        print(f"[stream] error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
