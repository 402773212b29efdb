"""The embedded MLflow tracking server and model registry.

    python -m topology.mlflow start [--port 5000]   start it, or say it already runs
    python -m topology.mlflow stop | status

`mlflow server` on 127.0.0.1 with a SQLite backend store and proxied
artifacts (`--serve-artifacts`: clients, the Go replicas included, read and
write artifacts through the server's REST API only), everything under
$STATE/mlflow/ (run/ by default): mlflow.db, artifacts/, mlflow.pid and
mlflow.log. It runs from its own venv, .venv-mlflow (`make mlflow` builds it
from requirements/mlflow-server.txt), because mlflow's pins clash with the
project's. start converges: a healthy server is left alone, a dead one is
started again on the same store.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

from topology import processes

ROOT = Path(__file__).resolve().parents[1]
MLFLOW = ROOT / ".venv-mlflow" / "bin" / "mlflow"
HOST = "127.0.0.1"
PORT = 5000
START_TIMEOUT = 180  # seconds; the first start creates the database (migrations), slow on 2 busy cores


def say(message: str) -> None:
    print(f"[mlflow] {message}", flush=True)


def state_dir() -> Path:
    return Path(os.environ.get("STATE", ROOT / "run")).resolve() / "mlflow"


def url(port: int) -> str:
    return f"http://{HOST}:{port}"


def healthy(port: int) -> bool:
    """Whether an MLflow server answers GET /health on the port."""
    try:
        with urllib.request.urlopen(url(port) + "/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def pid(state: Path) -> int | None:
    """The server's pid if the pid file names a live `mlflow server` process."""
    return processes.alive(state / "mlflow.pid", "mlflow")


def saved_port(state: Path) -> int | None:
    """The port the server was started on (mlflow.port beside the pid file)."""
    try:
        return int((state / "mlflow.port").read_text())
    except (FileNotFoundError, ValueError):
        return None


def command(state: Path, port: int) -> list[str]:
    return [str(MLFLOW), "server", "--host", HOST, "--port", str(port),
            "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
            "--serve-artifacts", "--artifacts-destination", str(state / "artifacts"),
            "--workers", "1"]


def start(port: int = PORT, state: Path | None = None, timeout: float = START_TIMEOUT) -> str:
    """Start the server unless it already runs; return its URL once healthy."""
    state = state or state_dir()
    running = pid(state)
    if running is not None:
        port = saved_port(state) or port
        if healthy(port) or _wait_healthy(port, running, timeout):
            say(f"already running: {url(port)} (pid {running}); store {state}")
            return url(port)
        raise RuntimeError(f"mlflow server pid {running} runs but {url(port)}/health does not answer; "
                           f"see {state / 'mlflow.log'} (make mlflow-down, then make mlflow)")
    if not MLFLOW.exists():
        raise RuntimeError(f"{MLFLOW} not found: run `make mlflow` (it builds .venv-mlflow)")
    if healthy(port):
        raise RuntimeError(f"another MLflow server already answers on {url(port)}, not started from {state}: "
                           "stop it or pick another MLFLOW_PORT")
    state.mkdir(parents=True, exist_ok=True)
    (state / "artifacts").mkdir(exist_ok=True)
    server = processes.spawn(command(state, port), state / "mlflow.log", dict(os.environ))
    (state / "mlflow.pid").write_text(f"{server}\n")
    (state / "mlflow.port").write_text(f"{port}\n")
    if not _wait_healthy(port, server, timeout):
        tail = (state / "mlflow.log").read_text(errors="replace").splitlines()[-15:]
        stop(state)
        raise RuntimeError(f"mlflow server did not become healthy on {url(port)} in {timeout:g}s; "
                           f"last lines of {state / 'mlflow.log'}:\n" + "\n".join(tail))
    say(f"ready: {url(port)} (pid {server}); SQLite store and artifacts under {state}")
    return url(port)


def _wait_healthy(port: int, server_pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(port):
            return True
        if not processes.running(server_pid):
            return False
        time.sleep(0.5)
    return False


def stop(state: Path | None = None, timeout: float = 30) -> None:
    """Stop the server (its whole process group: mlflow server runs uvicorn
    workers) and wait for it; nothing to do if it is not running."""
    state = state or state_dir()
    n = pid(state)
    if n is None:
        (state / "mlflow.pid").unlink(missing_ok=True)
        return
    try:
        os.killpg(n, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while pid(state) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid(state) is not None:
        say(f"pid {n} did not stop in {timeout:g}s; killing it")
        os.killpg(n, signal.SIGKILL)
    (state / "mlflow.pid").unlink(missing_ok=True)
    say(f"stopped (pid {n})")


def status(state: Path | None = None) -> bool:
    state = state or state_dir()
    n = pid(state)
    if n is None:
        say(f"not running from {state}")
        return False
    port = saved_port(state) or PORT
    say(f"running: {url(port)} (pid {n}), {'healthy' if healthy(port) else 'NOT answering /health'}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topology.mlflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLFLOW_PORT", PORT)))
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            start(args.port)
        elif args.action == "stop":
            stop()
        else:
            return 0 if status() else 1
    except RuntimeError as err:
        print(f"[mlflow] error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
