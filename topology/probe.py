"""Looking at servers from outside: free loopback ports, HTTP requests,
readiness, Prometheus metrics, and the one polling loop everything waits with.
"""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from email.message import Message
from pathlib import Path


def free_ports(n: int, avoid: Iterable[int] = ()) -> int:
    """Return a port p such that p … p+n-1 are free on 127.0.0.1 and none is
    in `avoid` (ports already handed out, not yet bound).

    The ports come from below the kernel's ephemeral range: every outgoing
    connection takes a port there, and one in TIME_WAIT (a load run leaves
    tens of thousands) keeps it from being bound for a minute."""
    avoid = set(avoid)
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, max(10_001, low - n))
        block = range(base, base + n)
        if not avoid.intersection(block) and all(port_free(p) for p in block):
            return base
    raise RuntimeError(f"no {n} consecutive free ports between 10000 and {low}")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_free(port: int) -> bool:
    """Whether a server could bind 127.0.0.1:port now (as servers do, with
    SO_REUSEADDR: connections of a server gone, in TIME_WAIT, do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def exchange(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             timeout: float = 30) -> tuple[int, bytes, Message]:
    """Send one request; return (status, raw body, response headers), an
    error status included. A connection that fails raises OSError."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def request(method: str, url: str, body: bytes | None = None, content_type: str = "application/json",
            timeout: float = 30) -> tuple[int, dict | str]:
    """Send one request; return (status, parsed JSON body or text)."""
    status, raw, headers = exchange(method, url, body, {"Content-Type": content_type} if body is not None else None,
                                    timeout)
    return status, (json.loads(raw) if "json" in headers.get("Content-Type", "") else raw.decode())


def answers(url: str) -> bool:
    """True if GET url answers 200 (False if it answers otherwise or not at all)."""
    try:
        return request("GET", url, timeout=2)[0] == 200
    except OSError:
        return False


def ready(url: str) -> bool:
    """True if the server at url answers /readyz with 200."""
    return answers(url + "/readyz")


def wait_until(what: str, condition: Callable, timeout: float = 30, interval: float = 0.1):
    """Poll condition() until it returns something true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_http(url: str, timeout: float, alive: Callable[[], bool] | None = None, what: str = "") -> None:
    """Wait until GET url answers 200; RuntimeError at once if alive() turns
    false (the server exited), TimeoutError after timeout seconds."""
    def check() -> bool:
        if answers(url):
            return True
        if alive is not None and not alive():
            raise RuntimeError(f"{what or url} exited before {url} answered")
        return False

    wait_until(f"{url} to answer 200", check, timeout=timeout)


def metric(url: str, name: str, labels: str = "") -> float:
    """The sum of a metric's samples at url (a /metrics page) whose labels contain `labels`."""
    status, text = request("GET", url, timeout=10)
    if status != 200:
        raise RuntimeError(f"{url} answered {status}")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in "{ " and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
