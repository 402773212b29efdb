"""A private PostgreSQL cluster on 127.0.0.1 for the monitor's figures.

    python -m topology.postgres start [--port 5432]   converges: a running cluster is left alone
    python -m topology.postgres stop | status | url

The cluster lives in $STATE/postgres/ (run/postgres/: data/, postgres.log),
runs as the `postgres` system user (the server refuses root) and listens on
127.0.0.1 only, with its Unix socket inside the data directory. The system's
PostgreSQL binaries are used, installed with apt-get when missing. start
creates the database `skl2go`; `url` prints the URL the monitor writes to
(MONITOR_DB). Loopback connections are trusted: this is a development
cluster; a team's database is given as MONITOR_DB instead.
"""

from __future__ import annotations

import argparse
import os
import pwd
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from topology.probe import listening, port_free

DATABASE = "skl2go"
SUPERUSER = "postgres"
OS_USER = "postgres"
PORT = 5432
START_TIMEOUT = 60


def log(message: str) -> None:
    print(f"[postgres] {message}", flush=True)


def bindir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin, installing postgresql with apt-get when there is none."""
    def found() -> list[Path]:
        return sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not found():
        from topology.kafka import apt_install

        apt_install("postgresql")
    if not found():
        sys.exit("[postgres] error: no /usr/lib/postgresql/*/bin/initdb after installing postgresql")
    return found()[-1]


@dataclass
class Cluster:
    state: Path  # the state directory (run/)
    port: int = PORT

    @property
    def dir(self) -> Path:
        return self.state / "postgres"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        return self.dir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def pid(self) -> int | None:
        """The postmaster's pid from data/postmaster.pid, if that process runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError, PermissionError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"postgres" in cmdline else None

    def saved_port(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n")[3])
        except (FileNotFoundError, ValueError, IndexError, PermissionError):
            return None


def _as_owner(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a PostgreSQL tool as the cluster's owner (root runs it through runuser)."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", OS_USER, "--", *argv]
    return subprocess.run(argv, check=True, **kw)


def _prepare(cluster: Cluster) -> None:
    cluster.dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        owner = pwd.getpwnam(OS_USER)
        os.chown(cluster.dir, owner.pw_uid, owner.pw_gid)
        probe = subprocess.run(["runuser", "-u", OS_USER, "--", "test", "-w", str(cluster.dir)])
        if probe.returncode != 0:
            sys.exit(f"[postgres] error: the {OS_USER} user cannot write {cluster.dir} (a parent directory is "
                     "closed to other users): choose a STATE it can reach")


def start(cluster: Cluster) -> str:
    """Start the cluster unless it runs, create the database; return its URL."""
    pid = cluster.pid()
    if pid is not None:
        cluster.port = cluster.saved_port() or cluster.port
        log(f"already running: {cluster.url} (pid {pid}); data {cluster.data}")
        create_database(cluster)
        return cluster.url
    if not port_free(cluster.port) or listening(cluster.port):
        sys.exit(f"[postgres] error: 127.0.0.1:{cluster.port} is taken by another process (not {cluster.data}); "
                 "stop it or pick another POSTGRES_PORT")
    bin_ = bindir()
    _prepare(cluster)
    if not (cluster.data / "PG_VERSION").is_file():
        _as_owner([str(bin_ / "initdb"), "-D", str(cluster.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                   "--locale=C"], stdout=subprocess.DEVNULL)
        log(f"initialised {cluster.data}")
    began = time.monotonic()
    options = f"-p {cluster.port} -c listen_addresses=127.0.0.1 -k {cluster.data}"
    _as_owner([str(bin_ / "pg_ctl"), "-D", str(cluster.data), "-l", str(cluster.log_file), "-o", options,
               "-w", "-t", str(START_TIMEOUT), "start"], stdout=subprocess.DEVNULL)
    create_database(cluster)
    log(f"ready: {cluster.url} (pid {cluster.pid()}) in {time.monotonic() - began:.1f}s; log {cluster.log_file}")
    return cluster.url


def create_database(cluster: Cluster) -> None:
    psql = [str(bindir() / "psql"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", SUPERUSER, "-d", "postgres",
            "-tA", "-c"]
    exists = subprocess.run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
                            check=True, capture_output=True, text=True).stdout.strip()
    if exists != "1":
        subprocess.run([*psql, f"CREATE DATABASE {DATABASE}"], check=True, stdout=subprocess.DEVNULL)
        log(f"created database {DATABASE}")


def stop(cluster: Cluster) -> None:
    if cluster.pid() is None:
        log("not running")
        return
    pid = cluster.pid()
    _as_owner([str(bindir() / "pg_ctl"), "-D", str(cluster.data), "-m", "fast", "-w", "stop"],
              stdout=subprocess.DEVNULL)
    log(f"stopped (pid {pid})")


def status(cluster: Cluster) -> int:
    pid = cluster.pid()
    if pid is None:
        print(f"postgres: not running (data {cluster.data})")
        return 1
    port = cluster.saved_port() or cluster.port
    print(f"postgres: pid {pid}, 127.0.0.1:{port} {'answers' if listening(port) else 'does not answer'}")
    return 0 if listening(port) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topology.postgres", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status", "url"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("POSTGRES_PORT", PORT)))
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("STATE", "run")))
    args = parser.parse_args(argv)
    cluster = Cluster(args.state.resolve(), args.port)
    if args.command == "start":
        start(cluster)
    elif args.command == "stop":
        stop(cluster)
    elif args.command == "url":
        cluster.port = cluster.saved_port() or cluster.port
        print(cluster.url)
    else:
        return status(cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
