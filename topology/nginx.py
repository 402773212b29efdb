"""nginx in front of the replicas: its configuration (nginx/render.sh fills
nginx/nginx.conf.template, the same renderer docker-compose.yml runs), and
starting, reloading and stopping it from the state directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import processes
from .probe import wait_until
from .settings import Settings

ROOT = Path(__file__).resolve().parents[1]  # the repository
RENDER = ROOT / "nginx" / "render.sh"


class NginxError(RuntimeError):
    pass


def installed() -> bool:
    return shutil.which("nginx") is not None


def render(s: Settings, addrs: list[str]) -> str:
    """nginx.conf for these replica addresses."""
    env = {**os.environ, "CLIENT_TIMEOUT": s.client_timeout, "FAIL_TIMEOUT": str(s.fail_timeout),
           "RATE_LIMIT": s.rate_limit, "RATE_BURST": s.rate_burst, "BENCH_LISTEN": s.bench_listen}
    done = subprocess.run([str(RENDER), f"127.0.0.1:{s.port}", str(s.state), *addrs], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise NginxError(done.stderr.strip())
    return done.stdout


def conf_file(s: Settings) -> Path:
    return s.state / "nginx.conf"


def pidfile(state: Path) -> Path:
    return state / "nginx.pid"  # written by nginx itself (the template's pid directive)


def pid(state: Path) -> int | None:
    return processes.alive(pidfile(state), "nginx")


def _nginx(s: Settings, *args: str, conf: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["nginx", "-p", f"{s.state}/", "-c", str(conf or conf_file(s)), *args],
                          capture_output=True, text=True)


def write(s: Settings, text: str) -> None:
    """Write nginx.conf, after nginx itself accepted it (a refused one leaves the file as it was)."""
    (s.state / "nginx").mkdir(parents=True, exist_ok=True)
    (s.state / "logs").mkdir(parents=True, exist_ok=True)
    candidate = s.state / "nginx.conf.new"
    candidate.write_text(text)
    checked = _nginx(s, "-q", "-t", conf=candidate)
    if checked.returncode != 0:
        candidate.unlink()
        raise NginxError(f"nginx rejected the configuration: {checked.stderr.strip()}")
    candidate.replace(conf_file(s))


def start(s: Settings) -> int:
    done = _nginx(s)
    if done.returncode != 0:
        raise NginxError(f"nginx did not start ({done.stderr.strip()}); see {s.state}/logs/nginx-error.log")
    return wait_until("nginx to write its pid file", lambda: pid(s.state), timeout=10)


def reload(state: Path, timeout: float = 60) -> None:
    """Apply nginx.conf without a restart: the master starts workers with the
    new configuration and the old ones finish their requests and exit. Returns
    once every old worker has exited, so no request goes by the old
    configuration any more."""
    master = pid(state)
    if master is None:
        raise NginxError(f"nginx is not running from {state}")
    old = set(processes.children(master))
    os.kill(master, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while any(processes.running(w) for w in old) or not processes.children(master):
        if time.monotonic() > deadline:
            raise NginxError(f"nginx did not apply the new configuration within {timeout:g}s "
                             f"(old workers still running); see {state}/logs/nginx-error.log")
        time.sleep(0.05)


def stop(state: Path, say=None) -> None:
    """Graceful stop (QUIT: in-flight requests finish)."""
    master = pid(state)
    if master is not None:
        processes.stop(master, signal.SIGQUIT, timeout=30, say=say)
        if say:
            say(f"stopped nginx (pid {master})")
    pidfile(state).unlink(missing_ok=True)
