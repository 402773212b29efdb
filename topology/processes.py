"""Processes by pid, read from /proc: whether a pid file still names the
process it was written for, stopping one with a bounded wait, a process's
children, and the CPU time they used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def running(pid: int) -> bool:
    """The process exists and has not exited (an exited process stays a
    zombie until its parent reaps it, and signals still reach it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state not in ("", "Z")


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pidfile: Path, name: str) -> int | None:
    """The pid in pidfile if that process runs and its command line names
    `name` (a pid the kernel recycled for another program does not count)."""
    pid = read_pid(pidfile)
    if pid is None or not running(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return pid if name in cmdline else None


def stop(pid: int, sig: int = signal.SIGTERM, timeout: float = 30, say=None) -> None:
    """Send sig, wait up to timeout seconds for the process to exit, then SIGKILL it."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if running(pid):
        if say:
            say(f"pid {pid} did not stop in {timeout:g} s; killing it")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def terminate(process: subprocess.Popen, timeout: float = 15) -> None:
    """stop() a child process and reap it."""
    if process.poll() is None:
        stop(process.pid, signal.SIGTERM, timeout)
    process.wait(5)


def spawn(argv: list[str], log: Path, env: dict[str, str]) -> int:
    """Start a daemon in its own session (it outlives the caller), its output
    appended to log; return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    return process.pid


def children(pid: int) -> list[int]:
    """Direct children of pid (nginx or gunicorn workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), plus what their
    exited and reaped children used (cutime + cstime), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone: its time is in its parent's cutime once reaped
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """The resident set size of a process (VmRSS in /proc/<pid>/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise ValueError(f"/proc/{pid}/status has no VmRSS (a kernel thread or a zombie)")
