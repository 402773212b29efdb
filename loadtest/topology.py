"""A Python handle on the local topology that `make up` starts (nginx/topology.sh):
nginx on a free loopback port in front of N Go replicas, with its own state
directory. The tests and the chaos run drive it through the same make
targets a user runs, and look at it through HTTP, pid files and metrics.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_ports(n: int, avoid: Iterable[int] = ()) -> int:
    """Return a port p such that p … p+n-1 are free on 127.0.0.1 and none is
    in `avoid` (ports already handed out, not yet bound)."""
    avoid = set(avoid)
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        block = range(base, base + n)
        if base + n < 65536 and not avoid.intersection(block) and all(port_free(p) for p in block):
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def make(target: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def request(method: str, url: str, body: bytes | None = None, content_type: str = "application/json",
            timeout: float = 30) -> tuple[int, dict | str]:
    """Send one request; return (status, parsed JSON body or text)."""
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
            ctype = resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
    return status, (json.loads(raw) if "json" in ctype else raw.decode())


def ready(url: str) -> bool:
    """True if the server at url answers /readyz with 200."""
    try:
        return request("GET", url + "/readyz", timeout=2)[0] == 200
    except OSError:
        return False


def wait_until(what: str, condition, timeout: float = 30, interval: float = 0.1):
    """Poll condition() until it returns something true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Topology:
    url: str  # nginx
    replicas: list[str]  # each replica's base URL
    state: Path
    env: dict  # the environment `make up` ran with; the other targets reuse it

    def pids(self) -> list[int]:
        """The replicas' process ids, in replica order."""
        return [int((self.state / f"replica-{i}.pid").read_text()) for i in range(1, len(self.replicas) + 1)]

    def start_replica(self, n: int) -> None:
        """Start replica n (1-based) again and wait until it is ready."""
        done = subprocess.run(["nginx/topology.sh", "start-replica", str(n)], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"start-replica {n} failed:\n{done.stdout}\n{done.stderr}")

    def rollout(self) -> subprocess.CompletedProcess:
        return make("rollout", self.env, timeout=300)

    def metric(self, replica: int, name: str, labels: str = "") -> float:
        """The sum of a metric's samples on replica n (1-based) whose labels contain `labels`."""
        status, text = request("GET", f"{self.replicas[replica - 1]}/metrics")
        if status != 200:
            raise RuntimeError(f"replica {replica} /metrics answered {status}")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in "{ " and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

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
    variables (SKL2GO_* server flags, RATE_LIMIT, CLIENT_TIMEOUT, …)."""
    port = free_ports(1)
    base = free_ports(replicas, avoid=[port])
    env = {**os.environ, "PORT": str(port), "BASE_PORT": str(base), "REPLICAS": str(replicas),
           "MODELS": str(models), "STATE": str(state), **settings}
    started = make("up", env)
    if started.returncode != 0:
        make("down", env)
        raise RuntimeError(f"make up failed:\n{started.stdout}\n{started.stderr}")
    return Topology(f"http://127.0.0.1:{port}", [f"http://127.0.0.1:{base + i}" for i in range(replicas)], state, env)


@contextlib.contextmanager
def running(models: Path, state: Path, replicas: int = 2, **settings: str) -> Iterator[Topology]:
    """start(…), and `make down` on exit, even after a failure."""
    topology = start(models, state, replicas, **settings)
    try:
        yield topology
    finally:
        topology.down()
