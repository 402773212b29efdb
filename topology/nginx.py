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
    """nginx.conf for these replica addresses (HTTP; gRPC on each one's port + GRPC_OFFSET)."""
    env = {**os.environ, "CLIENT_TIMEOUT": s.client_timeout, "FAIL_TIMEOUT": str(s.fail_timeout),
           "RATE_LIMIT": s.rate_limit, "RATE_BURST": s.rate_burst, "BENCH_LISTEN": s.bench_listen,
           "AUTH": "on" if s.auth else "",
           "GRPC_LISTEN": f"127.0.0.1:{s.grpc_port}" if s.grpc_port else "", "GRPC_OFFSET": str(s.grpc_offset)}
    if s.tls_port:
        cert, key = tls_files(s)
        env |= {"TLS_PORT": str(s.tls_port), "TLS_CERT": str(cert), "TLS_KEY": str(key)}
    done = subprocess.run([str(RENDER), f"127.0.0.1:{s.port}", str(s.state), *addrs], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise NginxError(done.stderr.strip())
    return done.stdout


def tls_files(s: Settings) -> tuple[Path, Path]:
    """The certificate and key nginx serves: TLS_CERT/TLS_KEY, or a
    self-signed pair for 127.0.0.1 and localhost made once in $STATE/tls
    (kept afterwards, so `up` twice renders the same configuration)."""
    if s.tls_cert:
        return Path(s.tls_cert), Path(s.tls_key)
    tls = s.state / "tls"
    cert, key = tls / "cert.pem", tls / "key.pem"
    if not (cert.is_file() and key.is_file()):
        tls.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "365", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
        if made.returncode != 0:
            raise NginxError(f"openssl could not make a self-signed certificate: {made.stderr.strip()}")
        key.chmod(0o600)
    return cert, key


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
