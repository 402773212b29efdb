"""The local stack: REPLICAS Go servers on loopback behind nginx, with its
state under STATE: topology.json (the settings and each replica's slot,
port and what it was started with), replica-<slot>.pid, nginx.pid,
nginx.conf and logs/. `down` stops exactly what `up` started.

`up` converges: with the settings the stack runs with it changes nothing;
a replica that died is started again where it was; replicas started with
other settings (MODELS, SKL2GO_* flags, GOMAXPROCS) are replaced one at a
time, as `rollout` replaces them all; more REPLICAS are started and ready
before nginx sends them requests, fewer leave nginx's configuration before
they stop; nginx's own settings are applied by a reload, never a restart.

How a replica is replaced (`replace_replica`). With two or more, in place:
the others are in nginx's rotation, the old process drains and exits
(nginx sends the next requests to the others, and retries there a request
whose connection was refused), the new one starts on the same address, and
it is back in rotation before the next is touched. nginx's configuration
does not change, so nginx is not reloaded. A reload makes nginx's old
workers close their idle client keep-alive connections, and a client that
sends its next request on such a connection in that instant sees the
connection closed without an answer (one Locust run counted each as a
failure). With a single replica there is no other to serve meanwhile: the
new process starts beside the old one on a new port and nginx is reloaded
to send it requests before the old one stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import nginx, processes
from .probe import metric, port_free, wait_http
from .settings import Plan, Replica, Settings, SettingsError, next_ports, plan

STATE_FILE = "topology.json"
SERVER_NAME = "skl2go-server"  # in every replica's command line


class TopologyError(RuntimeError):
    """The stack cannot be brought where it was asked to go; the message says why."""


def say(message: str) -> None:
    print(f"[topology] {message}", flush=True)


# --- the state directory ------------------------------------------------------

@dataclass
class State:
    settings: Settings
    replicas: list[Replica] = field(default_factory=list)

    def save(self) -> None:
        document = {"settings": self.settings.as_json(),
                    "replicas": [{"slot": r.slot, "port": r.port, "spec": r.spec} for r in self.replicas]}
        tmp = self.settings.state / (STATE_FILE + ".new")
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        tmp.replace(self.settings.state / STATE_FILE)

    def replica(self, slot: int) -> Replica | None:
        return next((r for r in self.replicas if r.slot == slot), None)

    def put(self, new: Replica) -> None:
        self.replicas = sorted([r for r in self.replicas if r.slot != new.slot] + [new], key=lambda r: r.slot)


def load(state: Path) -> State | None:
    try:
        document = json.loads((state / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    return State(Settings.from_json(document["settings"]), [Replica(**r) for r in document["replicas"]])


@contextlib.contextmanager
def locked(state: Path) -> Iterator[None]:
    """One command at a time on a state directory."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pidfile(state: Path, slot: int, incoming: bool = False) -> Path:
    """replica-<slot>.pid; replica-<slot>.incoming.pid while a new replica
    for the slot starts beside the old one."""
    return state / f"replica-{slot}{'.incoming' if incoming else ''}.pid"


def replica_pid(state: Path, slot: int) -> int | None:
    return processes.alive(pidfile(state, slot), SERVER_NAME)


def log_file(state: Path, slot: int) -> Path:
    return state / "logs" / f"replica-{slot}.log"


def inference_log_dir(state: Path, slot: int) -> Path:
    """Where replica `slot` writes its inference log (INFERENCE_LOG, ACTUALS_TOKEN)."""
    return state / "inference" / f"replica-{slot}"


# --- one replica --------------------------------------------------------------

def spawn(s: Settings, r: Replica, incoming: bool = False) -> int:
    """Start replica r in the background with its spec (its log is appended to)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKL2GO_") and k != "GOMAXPROCS"}
    env.update(r.spec["env"])
    models = r.spec["models"]
    if r.spec["env"].get("SKL2GO_REGISTRY"):
        # With a registry each replica keeps its own cache of the registry's
        # versions (docs/registry.md), kept across restarts.
        cache = s.state / "registry" / f"replica-{r.slot}"
        cache.mkdir(parents=True, exist_ok=True)
        models = str(cache)
    args = [r.spec["server"], "--models", models, "--addr", r.addr]
    if {"SKL2GO_INFERENCE_LOG_RATE", "SKL2GO_ACTUALS_TOKEN_FILE"} & r.spec["env"].keys():
        # One inference log directory per replica slot, kept across restarts.
        args += ["--inference-log", str(inference_log_dir(s.state, r.slot))]
    pid = processes.spawn(args, log_file(s.state, r.slot), env)
    pidfile(s.state, r.slot, incoming).write_text(f"{pid}\n")
    return pid


def wait_ready(s: Settings, r: Replica, pid: int) -> None:
    """Wait until replica r answers /readyz; TopologyError if it exits or takes longer than READY_TIMEOUT."""
    try:
        wait_http(f"http://{r.addr}/readyz", s.ready_timeout, alive=lambda: processes.running(pid))
    except RuntimeError:
        raise TopologyError(f"replica {r.slot} ({r.addr}) exited during start-up; "
                            f"see {log_file(s.state, r.slot)}") from None
    except TimeoutError:
        raise TopologyError(f"replica {r.slot} ({r.addr}) not ready after {s.ready_timeout:g}s; "
                            f"see {log_file(s.state, r.slot)}") from None


def predictions(r: Replica) -> float:
    """Inference requests replica r has answered (v1 and v2); 0 if it does not answer."""
    try:
        return metric(f"http://{r.addr}/metrics", "skl2go_inference_request_success_total")
    except (OSError, RuntimeError, ValueError):
        return 0.0


def wait_in_rotation(s: Settings, replicas: list[Replica]) -> None:
    """nginx counts the refused connections of a restart in place as failures
    and rests the replica for FAIL_TIMEOUT. Wait until nginx sends each of
    `replicas` requests again, or FAIL_TIMEOUT + 1 s has passed (no traffic
    to see, so nothing to lose)."""
    before = {r.slot: predictions(r) for r in replicas}
    deadline = time.monotonic() + s.fail_timeout + 1
    while time.monotonic() < deadline:
        if all(predictions(r) > before[r.slot] for r in replicas):
            return
        time.sleep(0.2)


def show_logs(state: Path) -> None:
    for log in sorted((state / "logs").glob("*.log")):
        if log.stat().st_size:
            lines = log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- last lines of {log}", *lines, sep="\n", file=sys.stderr)


# --- commands -----------------------------------------------------------------

def check_prerequisites(s: Settings) -> None:
    if not os.access(s.server, os.X_OK):
        raise TopologyError(f"{s.server} not found: run 'make build' first")
    if not s.models.is_dir() and not s.replica_env.get("SKL2GO_REGISTRY"):
        raise TopologyError(f"model repository {s.models} not found: run 'make train export' first")
    if not nginx.installed():
        raise TopologyError("nginx not installed: run 'make nginx' (apt-get install nginx)")


def up(want: Settings) -> None:
    """Bring the stack to `want` (see the module's doc)."""
    check_prerequisites(want)
    with locked(want.state):
        saved = load(want.state)
        alive = {r.slot for r in saved.replicas if replica_pid(want.state, r.slot)} if saved else set()
        if saved is None or not alive and nginx.pid(want.state) is None:
            fresh(want)
        else:
            converge(want, saved, alive)


def fresh(s: Settings) -> None:
    """Start everything from nothing: replicas on BASE_PORT…, then nginx."""
    stop_all(s.state)
    replicas = [Replica(i, s.base_port + i - 1, s.spec()) for i in range(1, s.replicas + 1)]
    for r in replicas:
        if not port_free(r.port):
            raise TopologyError(f"port {r.port} is already in use (set BASE_PORT to move the replicas)")
    if not port_free(s.port):
        raise TopologyError(f"port {s.port} is already in use (set PORT to move nginx)")
    if s.bench_listen and not port_free(int(s.bench_listen.rsplit(":", 1)[1])):
        raise TopologyError(f"port {s.bench_listen.rsplit(':', 1)[1]} (BENCH_LISTEN) is already in use")
    (s.state / "logs").mkdir(parents=True, exist_ok=True)
    state = State(s, replicas)
    state.save()
    try:
        pids = {}
        for r in replicas:
            log_file(s.state, r.slot).write_bytes(b"")
            pids[r.slot] = spawn(s, r)
        nginx.write(s, nginx.render(s, [r.addr for r in replicas]))
        nginx.start(s)
        for r in replicas:
            wait_ready(s, r, pids[r.slot])
        wait_nginx(s)
    except BaseException:
        show_logs(s.state)
        stop_all(s.state)
        raise
    say_ready(state)


def wait_nginx(s: Settings) -> None:
    try:
        wait_http(f"http://127.0.0.1:{s.port}/readyz", s.ready_timeout)
    except TimeoutError:
        raise TopologyError(f"nginx on 127.0.0.1:{s.port} not ready after {s.ready_timeout:g}s") from None


def say_ready(state: State) -> None:
    s = state.settings
    say(f"ready: nginx on http://127.0.0.1:{s.port} -> {len(state.replicas)} replica(s) "
        f"{' '.join(r.addr for r in state.replicas)}; logs in {s.state}/logs")


def apply_nginx(state: State) -> bool:
    """Render nginx.conf for the state's replicas and settings; reload nginx
    if that changes it. Returns whether it did."""
    s = state.settings
    text = nginx.render(s, [r.addr for r in state.replicas])
    conf = nginx.conf_file(s)
    if conf.is_file() and conf.read_text() == text:
        return False
    nginx.write(s, text)
    nginx.reload(s.state)
    return True


def converge(want: Settings, saved: State, alive: set[int]) -> None:
    """A stack is (partly) running: change only what differs from `want`."""
    for leftover in want.state.glob("replica-*.incoming.pid"):  # an interrupted change
        pid = processes.alive(leftover, SERVER_NAME)
        if pid:
            processes.stop(pid)
        leftover.unlink()
    if want.port != saved.settings.port and not port_free(want.port):
        raise TopologyError(f"port {want.port} is already in use (set PORT to move nginx)")
    p: Plan = plan(want, saved.replicas, alive)
    state = State(replace(saved.settings, ready_timeout=want.ready_timeout), list(saved.replicas))
    changed = False

    restarted = []
    for r in p.restart:  # died: start it again where it was, if its port is still free
        if not port_free(r.port):
            p.replace.append((r.slot, r))
            continue
        wait_ready(want, r, spawn(want, r))
        restarted.append(r)
        changed = True
        say(f"replica {r.slot} was not running: started again on {r.addr}")

    if nginx.pid(want.state) is None:
        if not port_free(saved.settings.port):
            raise TopologyError(f"port {saved.settings.port} is already in use (set PORT to move nginx)")
        nginx.write(state.settings, nginx.render(state.settings, [r.addr for r in state.replicas]))
        nginx.start(state.settings)
        wait_nginx(state.settings)
        changed = True
        say("nginx was not running: started")

    replaced = [(slot, old) for slot, old in sorted(p.replace, key=lambda x: x[0]) if old is not None]
    if replaced:
        # A replica that cannot start with the new settings would be lost:
        # check them first, and touch nothing if they fail.
        check_repository(want.spec())
        wait_in_rotation(want, [r for r in state.replicas if replica_pid(want.state, r.slot)])
    for slot, old in replaced:
        new = replace_replica(state, old, want.spec())
        changed = True
        say(f"replica {slot} restarted with the new settings on {new.addr}")
    for slot, old in sorted(p.replace, key=lambda x: x[0]):
        if old is None:
            new = Replica(slot, new_port(state), want.spec())
            swap(state, None, new)
            changed = True
            say(f"replica {slot} added on {new.addr}")

    if p.retire:
        state.replicas = [r for r in state.replicas if r.slot <= want.replicas]
        state.settings = replace(state.settings, replicas=want.replicas)
        apply_nginx(state)
        state.save()
        for r in p.retire:
            stop_replica(want.state, r.slot)
            changed = True
            say(f"replica {r.slot} ({r.addr}) retired")

    state.settings = want
    if apply_nginx(state):
        changed = True
        say("nginx reloaded with the new configuration")
    state.save()
    wait_nginx(want)
    if restarted:
        wait_in_rotation(want, restarted)
    if not changed:
        say("already up with these settings: nothing changed")
    say_ready(state)


def new_port(state: State) -> int:
    """A port for a new replica: the lowest free one from BASE_PORT up that no replica of the stack has."""
    return next_ports(state.settings.base_port, 1, {r.port for r in state.replicas}, port_free)[0]


def check_repository(spec: dict) -> None:
    """Whether replicas started with `spec` would load the model repository
    (the server's --check, with the very binary and settings). With a
    registry there is no repository to check: the versions come from it."""
    if spec["env"].get("SKL2GO_REGISTRY"):
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKL2GO_") and k != "GOMAXPROCS"}
    checked = subprocess.run([spec["server"], "--check", "--models", spec["models"], "--log-level", "warn"],
                             env=env | spec["env"], capture_output=True, text=True)
    if checked.returncode != 0:
        sys.stderr.write(checked.stdout + checked.stderr)
        raise TopologyError("the model repository does not load; no replica restarted")


def replace_replica(state: State, old: Replica, spec: dict) -> Replica:
    """Replace `old` by a process started with `spec` (see the module's doc:
    in place with two replicas or more, beside it with one); return the new one."""
    s = state.settings
    if len(state.replicas) < 2 or not port_free(old.port) and replica_pid(s.state, old.slot) is None:
        new = Replica(old.slot, new_port(state), spec)
        swap(state, old, new)
        return new
    new = Replica(old.slot, old.port, spec)
    stop_replica(s.state, old.slot)  # SIGTERM: it drains its requests, then exits
    if not port_free(new.port):
        raise TopologyError(f"port {new.port} of replica {new.slot} was taken by another program meanwhile")
    pid = spawn(s, new)
    wait_ready(s, new, pid)
    state.put(new)
    state.save()
    wait_in_rotation(s, [new])
    return new


def swap(state: State, old: Replica | None, new: Replica) -> None:
    """Start `new` beside `old` (same slot), wait until it is ready, make
    nginx send it requests instead of `old` (a reload: the old workers finish
    their requests first), then stop `old`. If `new` does not start, `old`
    keeps serving and nothing changes."""
    s = state.settings
    old_pid = replica_pid(s.state, new.slot) if old else None
    pid = spawn(s, new, incoming=True)
    try:
        wait_ready(s, new, pid)
    except BaseException:
        processes.stop(pid)
        pidfile(s.state, new.slot, incoming=True).unlink(missing_ok=True)
        raise
    state.put(new)
    apply_nginx(state)
    state.save()
    if old_pid:
        processes.stop(old_pid, signal.SIGTERM, say=say)  # drains its requests, then exits
    pidfile(s.state, new.slot, incoming=True).replace(pidfile(s.state, new.slot))


def stop_replica(state: Path, slot: int) -> None:
    pid = replica_pid(state, slot)
    if pid:
        processes.stop(pid, signal.SIGTERM, say=say)
        say(f"stopped replica {slot} (pid {pid})")
    pidfile(state, slot).unlink(missing_ok=True)


def stop_all(state: Path) -> None:
    """Stop nginx (gracefully), then every replica; remove their pid files."""
    if not state.is_dir():
        return
    nginx.stop(state, say=say)
    for path in sorted(state.glob("replica-*.pid")):
        pid = processes.alive(path, SERVER_NAME)
        if pid:
            processes.stop(pid, signal.SIGTERM, say=say)
            say(f"stopped {path.name.removesuffix('.pid')} (pid {pid})")
        path.unlink(missing_ok=True)


def down(state: Path) -> None:
    if not state.is_dir():
        return
    with locked(state):
        stop_all(state)


def saved_state(state: Path) -> State:
    saved = load(state)
    if saved is None:
        raise TopologyError(f"nothing started from {state}: run 'make up' first")
    return saved


def start_replica(state_dir: Path, slot: str) -> None:
    """Start replica `slot` where it was if it is not running; wait until it is ready."""
    with locked(state_dir):
        state = saved_state(state_dir)
        r = state.replica(int(slot)) if slot.isdigit() else None
        if r is None:
            raise TopologyError(f"replica must be 1..{len(state.replicas)}, got {slot!r}")
        s = state.settings
        pid = replica_pid(s.state, r.slot)
        if pid:
            say(f"replica {r.slot} already running (pid {pid})")
        else:
            if not port_free(r.port):
                raise TopologyError(f"port {r.port} of replica {r.slot} is in use by another program")
            pid = spawn(s, r)
        wait_ready(s, r, pid)
        say(f"replica {r.slot} ready on {r.addr} (pid {pid})")


def rollout(state_dir: Path) -> None:
    """Replace every replica by a new process with the same settings, one at
    a time, each new one in nginx's rotation before its old one leaves."""
    with locked(state_dir):
        state = saved_state(state_dir)
        s = state.settings
        if nginx.pid(s.state) is None:
            raise TopologyError(f"nginx is not running from {s.state}: run 'make up' first")
        # A replica that cannot start would be lost: check the repository with
        # the very binary and settings first, and touch nothing if it fails.
        say(f"checking the model repository {s.models}")
        check_repository(s.spec())
        # Every replica must be up and in nginx's rotation before one leaves
        # (an earlier restart in place may have left one resting).
        for r in state.replicas:
            pid = replica_pid(s.state, r.slot)
            if pid is None:
                raise TopologyError(f"replica {r.slot} is not running; start it first "
                                    f"(make up, or python -m topology start-replica {r.slot})")
            wait_ready(s, r, pid)
        wait_in_rotation(s, state.replicas)
        for old in list(state.replicas):
            old_pid = replica_pid(s.state, old.slot)
            new = replace_replica(state, old, old.spec)
            say(f"replica {old.slot} restarted (pid {old_pid} -> {replica_pid(s.state, old.slot)}"
                + (f", {old.addr} -> {new.addr})" if new.port != old.port else ")"))
        say(f"rollout done: {len(state.replicas)} replica(s) restarted one at a time")


def status(state_dir: Path) -> None:
    found = False
    pid = nginx.pid(state_dir)
    if pid:
        say(f"nginx running (pid {pid})")
        found = True
    saved = load(state_dir)
    for r in saved.replicas if saved else []:
        pid = replica_pid(state_dir, r.slot)
        if pid:
            say(f"replica-{r.slot} running (pid {pid}) on {r.addr}")
            found = True
    if not found:
        say(f"nothing running from {state_dir}")


__all__ = ["SettingsError", "TopologyError", "down", "rollout", "start_replica", "status", "up"]
