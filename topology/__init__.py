"""The running stack: Go replicas behind nginx on loopback (python -m topology
up|down|status|rollout|start-replica N; make up / down / status / rollout).

    settings.py   what the stack should be (environment) and the plan to get there
    stack.py      up (converges), down, status, rollout, start-replica; the state directory
    nginx.py      nginx's configuration (nginx/render.sh), start, reload, stop
    processes.py  pids, pid files, stopping, CPU time
    probe.py      ports, HTTP requests, readiness, metrics, waiting

and the services beside it, each its own `python -m topology.<module>`:
mlflow.py (tracking server and registry), kafka.py (a Kafka broker) and
stream.py (the Go stream consumers, which `down` stops too).

This module is the handle the tests, parity, chaos and bench use: `running`
starts a stack on free loopback ports through `make up` and stops it after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import processes, stack
from .nginx import ROOT
from .probe import exchange, free_ports, listening, metric, port_free, ready, request, wait_http, wait_until


__all__ = ["ROOT", "Topology", "exchange", "free_ports", "listening", "make", "port_free", "ready", "request", "running",
           "start", "wait_http", "wait_until"]


def make(target: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Topology:
    url: str  # nginx
    state: Path
    env: dict  # the environment `make up` ran with; the other targets reuse it

    @property
    def grpc(self) -> str:
        """nginx's gRPC address (host:port), or "" with gRPC off."""
        port = self.env.get("GRPC_PORT", "0")
        return f"127.0.0.1:{port}" if port != "0" else ""

    @property
    def replicas(self) -> list[str]:
        """Each replica's base URL, in slot order (a rollout moves them to new ports)."""
        saved = stack.load(self.state)
        return [f"http://{r.addr}" for r in saved.replicas] if saved else []

    def pids(self) -> list[int]:
        """The replicas' process ids, in slot order."""
        return [int(stack.pidfile(self.state, slot).read_text()) for slot in range(1, len(self.replicas) + 1)]

    def reload(self) -> None:
        """Tell every replica to look at the model repository now (SIGHUP),
        as `make up` after publishing would at the next poll."""
        for pid in self.pids():
            os.kill(pid, signal.SIGHUP)

    def nginx_pid(self) -> int:
        """nginx's master process id (a reload keeps it; a restart does not)."""
        return int((self.state / "nginx.pid").read_text())

    def server_pids(self) -> list[int]:
        """Replicas, nginx's master and its workers: the processes whose CPU time counts."""
        master = self.nginx_pid()
        return self.pids() + [master] + processes.children(master)

    def up(self, **settings: str) -> subprocess.CompletedProcess:
        """`make up` again, with some settings changed (they stay changed)."""
        self.env = {**self.env, **settings}
        if "PORT" in settings:
            self.url = f"http://127.0.0.1:{settings['PORT']}"
        return make("up", self.env)

    def start_replica(self, n: int) -> None:
        """Start replica n (1-based) again and wait until it is ready."""
        done = subprocess.run([sys.executable, "-m", "topology", "start-replica", str(n)], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"start-replica {n} failed:\n{done.stdout}\n{done.stderr}")

    def rollout(self) -> subprocess.CompletedProcess:
        return make("rollout", self.env, timeout=300)

    def metric(self, replica: int, name: str, labels: str = "") -> float:
        """The sum of a metric's samples on replica n (1-based) whose labels contain `labels`."""
        return metric(f"{self.replicas[replica - 1]}/metrics", name, labels)

    def served_versions(self, model: str) -> list[list[int]]:
        """The versions of a model each replica serves."""
        out = []
        for replica in self.replicas:
            status, body = request("GET", f"{replica}/v1/models")
            out.append(next((m["versions"] for m in body["models"] if m["name"] == model), []) if status == 200 else [])
        return out

    def down(self) -> subprocess.CompletedProcess:
        return make("down", self.env)


def start(models: Path, state: Path, replicas: int = 2, **settings: str) -> Topology:
    """`make up` on free loopback ports; settings are extra environment
    variables (SKL2GO_* server flags, RATE_LIMIT, CLIENT_TIMEOUT, BENCH_LISTEN, …)."""
    # PORT and BASE_PORT may be given; the ports chosen here avoid them.
    port = int(settings["PORT"]) if "PORT" in settings else free_ports(1)
    base = int(settings["BASE_PORT"]) if "BASE_PORT" in settings else \
        free_ports(2 * replicas, avoid=[port])  # room for the new replicas of a rolling change
    # gRPC: nginx's port, and the replicas' (their ports + GRPC_OFFSET) in a free block of their own.
    grpc_port = int(settings["GRPC_PORT"]) if "GRPC_PORT" in settings else \
        free_ports(1, avoid=[port, *range(base, base + 2 * replicas)])
    grpc_base = base + int(settings["GRPC_OFFSET"]) if "GRPC_OFFSET" in settings else \
        free_ports(2 * replicas, avoid=[port, grpc_port, *range(base, base + 2 * replicas)])
    env = {**os.environ, "PORT": str(port), "BASE_PORT": str(base), "REPLICAS": str(replicas),
           "GRPC_PORT": str(grpc_port), "GRPC_OFFSET": str(grpc_base - base),
           "MODELS": str(models), "STATE": str(state), **settings}
    if settings.get("AUTH") and "GRPC_PORT" not in settings:
        env["GRPC_PORT"] = "0"  # API keys cover the REST API only (docs/grpc.md)
    started = make("up", env)
    if started.returncode != 0:
        make("down", env)
        raise RuntimeError(f"make up failed:\n{started.stdout}\n{started.stderr}")
    return Topology(f"http://127.0.0.1:{env['PORT']}", Path(state), env)


@contextlib.contextmanager
def running(models: Path, state: Path, replicas: int = 2, **settings: str) -> Iterator[Topology]:
    """start(…), and `make down` on exit, even after a failure."""
    topology = start(models, state, replicas, **settings)
    try:
        yield topology
    finally:
        topology.down()
