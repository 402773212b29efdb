"""Prometheus on 127.0.0.1, scraping the replicas and the monitor's exporter.

    python -m topology.prometheus start [--port 9090] [--targets 127.0.0.1:9001,…] [--exporter 127.0.0.1:9190]
    python -m topology.prometheus stop | status

The Debian `prometheus` package's server (installed with apt-get when
missing), its configuration rendered from the repository's
topology/prometheus.yml into $STATE/prometheus/ with the targets given, its
data there too. start converges: a running server is told to reload its
configuration (SIGHUP) rather than restarted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from topology import processes
from topology.probe import listening, port_free, request

TEMPLATE = Path(__file__).with_name("prometheus.yml")
PORT = 9090


def log(message: str) -> None:
    print(f"[prometheus] {message}", flush=True)


@dataclass
class Server:
    state: Path
    port: int = PORT

    @property
    def dir(self) -> Path:
        return self.state / "prometheus"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        return processes.alive(self.dir / "prometheus.pid", "prometheus")


def binary() -> str:
    if not shutil.which("prometheus"):
        from topology.kafka import apt_install

        apt_install("prometheus")
    return shutil.which("prometheus") or sys.exit("[prometheus] error: no prometheus after installing it")


def render(server: Server, replicas: list[str], exporter: str) -> Path:
    """$STATE/prometheus/prometheus.yml: the template with the targets filled in."""
    server.dir.mkdir(parents=True, exist_ok=True)
    quoted = lambda targets: "[" + ", ".join(f"'{t}'" for t in targets) + "]"  # noqa: E731
    text = TEMPLATE.read_text().replace("REPLICAS", quoted(replicas)).replace("EXPORTER", quoted([exporter]))
    config = server.dir / "prometheus.yml"
    config.write_text(text)
    return config


def start(server: Server, replicas: list[str], exporter: str, timeout: float = 60) -> str:
    config = render(server, replicas, exporter)
    if (pid := server.pid()) is not None:
        os.kill(pid, signal.SIGHUP)
        log(f"already running: {server.url} (pid {pid}); configuration reloaded ({config})")
        return server.url
    if not port_free(server.port) or listening(server.port):
        sys.exit(f"[prometheus] error: 127.0.0.1:{server.port} is taken by another process; pick another PROMETHEUS_PORT")
    argv = [binary(), f"--config.file={config}", f"--storage.tsdb.path={server.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{server.port}", "--storage.tsdb.retention.time=7d"]
    pid = processes.spawn(argv, server.dir / "prometheus.log", dict(os.environ))
    (server.dir / "prometheus.pid").write_text(f"{pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if request("GET", server.url + "/-/ready", timeout=2)[0] == 200:
                log(f"ready: {server.url} (pid {pid}), scraping {', '.join(replicas + [exporter])}")
                return server.url
        except OSError:
            pass
        if not processes.running(pid):
            break
        time.sleep(0.3)
    stop(server)
    sys.exit(f"[prometheus] error: not ready on {server.url}; see {server.dir / 'prometheus.log'}")


def stop(server: Server) -> None:
    pid = server.pid()
    if pid is None:
        log("not running")
        return
    processes.stop(pid, signal.SIGTERM, 30, say=log)
    (server.dir / "prometheus.pid").unlink(missing_ok=True)
    log(f"stopped (pid {pid})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topology.prometheus", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PROMETHEUS_PORT", PORT)))
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("STATE", "run")))
    base, replicas = int(os.environ.get("BASE_PORT", "9001")), int(os.environ.get("REPLICAS", "2"))
    parser.add_argument("--targets", default=",".join(f"127.0.0.1:{base + i}" for i in range(replicas)),
                        help="the replicas' host:port, comma separated")
    parser.add_argument("--exporter", default=f"127.0.0.1:{os.environ.get('MONITOR_EXPORTER_PORT', '9190')}")
    args = parser.parse_args(argv)
    server = Server(args.state.resolve(), args.port)
    if args.command == "start":
        start(server, [t for t in args.targets.split(",") if t], args.exporter)
    elif args.command == "stop":
        stop(server)
    else:
        pid = server.pid()
        print(f"prometheus: {'pid %d, %s' % (pid, server.url) if pid else 'not running'}")
        return 0 if pid else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
