"""`make bench`: the Go server against the sklearn baseline, side by side, in
one run on one machine.

    python -m loadtest.bench [--quick] [--models models] [--name trip_duration]

Targets: sklearn_gunicorn (loadtest/baseline.py), fastapi_ort and
fastapi_ort_nginx (loadtest/fastapi_ort.py, direct and behind the stack's
nginx configuration), go_direct (one replica),
go_nginx (nginx + 2 replicas), go_nginx_log100 and go_nginx_log0 (the same
with every inference written to the inference log, and with the log off,
measured in turn), and two ceilings: nginx_static (nginx's own
`return 200`) and nginx_go_healthz (nginx proxying to the replicas' /healthz).
For each target and request size (1, 100, 1,000 rows) it runs:

1. Locust, the same users for the same time, back to back: req/s, latency
   percentiles and failures, every answer checked.
2. Locust at one fixed request rate for every target: the servers' CPU time
   per request, from /proc/<pid>/stat (utime + stime) of every server
   process (gunicorn master and workers; Go replicas, nginx master and
   workers) before and after.
3. wrk (C, from Debian): the peak req/s, which one Locust process cannot reach.

Single-record predict through nginx and nginx proxying to /healthz are then
measured again in alternating wrk rounds (A B, B A, …): their ratio is a
target, and on a shared machine one run of each can land in a quiet and a
busy minute. The median of the rounds' ratios is the figure.

Overload: single-record predict through nginx, open loop with
serve-go/cmd/skl2go-load -rate, at 0.75 to 2 times go_nginx's wrk req/s, with
the replicas' default --queue-timeout and a short one, each on a stack of its
own (bench.json's "overload"): 200s, 503s with and without Retry-After, other
errors, the latency of the 200s and of the 503s, and the replicas'
skl2go_shed_total.

gRPC (the Open Inference Protocol through nginx's gRPC port) is measured at
1 and 1,000 rows per request with serve-go/cmd/skl2go-load -protocol grpc, the
bounded Go load generator (bench.json's "grpc"), beside go_nginx under wrk.

Then the dynamic batching comparison (replicas restarted with it on, then off)
and sklearn's own in-process `predict` on the same rows. With --families
(build/parity, what `make parity` trains), each model family through nginx
at 1 and 1,000 rows (bench.json's "families"), the replicas' memory with
every family loaded ("memory") and a new version of the largest forest
swapped in under a steady stream of requests ("hot_reload", loadtest/swap.py),
and that forest as an experiment's mirror of the linear family, on and off
in alternating rounds ("shadow", loadtest/shadow.py). It writes
reports/bench.json, reports/bench.md, reports/bench.png and Locust's HTML and
CSV reports in reports/locust/. Everything it starts is stopped at the end,
also on failure or Ctrl-C; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits

import topology
from loadtest import baseline, fastapi_ort, report, samples, shadow, swap
from topology import ROOT, exchange, free_ports, nginx, processes
from topology.settings import Settings as StackSettings
from train import repository, tasks

WRK_SCRIPT = ROOT / "loadtest" / "wrk.lua"
LOAD = ROOT / "serve-go" / "bin" / "skl2go-load"
GRPC_ROWS = (1, 1000)  # request sizes measured over gRPC

# Dynamic batching settings of the replicas, by name (server flags as SKL2GO_*
# variables). "on" is the server's default; "on, 300us" also lets a run wait
# for more requests when they come that close.
BATCHING = {
    "on": {"SKL2GO_BATCH_MAX_ROWS": "64", "SKL2GO_BATCH_DELAY": "0"},
    "off": {"SKL2GO_BATCH_MAX_ROWS": "0"},
    "on, 300us": {"SKL2GO_BATCH_MAX_ROWS": "64", "SKL2GO_BATCH_DELAY": "300us"},
}
DEFAULT_BATCHING = "on"

# go_nginx_log100: the stack of go_nginx with the inference log at 100%
# (make up INFERENCE_LOG=1), its files bounded (4 of 64 MiB per replica),
# measured in turn with go_nginx_log0, the same stack with the log off,
# started beside it: the two figures come from adjacent runs.
INFERENCE_LOG_TARGET, INFERENCE_LOG_OFF_TARGET = "go_nginx_log100", "go_nginx_log0"
INFERENCE_LOG = {"INFERENCE_LOG": "1", "SKL2GO_INFERENCE_LOG_MAX_FILES": "4"}

# The model families phase (--families DIR: DIR/models/<name> with one model
# per family and DIR/build/<name> its held-out rows, as `make parity` leaves
# build/parity): each family through nginx under wrk at FAMILY_ROWS, the
# replicas' memory with every family loaded, and a new version of the largest
# forest swapped in under a steady stream of requests (loadtest/swap.py).
FAMILY_ROWS = (1, 1000)
LARGEST_FOREST = "random_forest"
# QUICK's subset: the trees and a classifier, next to linear.
QUICK_FAMILIES = ["linear", "random_forest", "hist_gradient_boosting", "gradient_boosting",
                  "random_forest_classifier"]


@dataclass
class Settings:
    """How long and how hard each run is."""

    rows: list[int] = field(default_factory=lambda: [1, 100, 1000])
    users: int = 16  # Locust users, for every target
    duration: int = 20  # seconds, Locust back to back
    fixed_duration: int = 20  # seconds, Locust at the fixed rate
    wrk_duration: int = 15  # seconds
    wrk_connections: int = 32
    wrk_threads: int = 2
    # Requests per second for the CPU measurement, the same for every target:
    # well within what the baseline sustains on 2 shared cores.
    fixed_rate: dict[int, float] = field(default_factory=lambda: {1: 100.0, 100: 40.0, 1000: 10.0})
    in_process_seconds: float = 3.0
    batching_rows: list[int] = field(default_factory=lambda: [1, 100])  # compare batching on/off at these
    paired_rounds: int = 5  # alternating wrk rounds of predict and /healthz through nginx
    paired_duration: int = 8  # seconds per run in those rounds
    families: list[str] = field(default_factory=lambda: list(tasks.FAMILIES))  # measured one by one
    family_alone: bool = True  # also each family's replica memory on its own (a replica started per family)
    family_warmup: int = 3  # seconds of 1,000-row wrk load before a replica's memory counts as warm
    swap_before: float = 5.0  # seconds of steady requests before a new version is published
    swap_after: float = 3.0  # and after every replica serves it
    swap_clients: int = 4  # steady clients, each one request at a time
    # The overload phase: go_nginx's single-record wrk req/s times each
    # factor, offered open loop through nginx with at most overload_workers
    # requests in flight (the issue's 2,000 concurrent connections).
    overload_factors: list[float] = field(default_factory=lambda: [0.75, 1.0, 1.5, 2.0])
    overload_duration: int = 10  # seconds per rate
    overload_workers: int = 2000
    # The replicas' --queue-timeout in turn: the default, and one short
    # enough that overload_workers requests in flight on 2 cores exceed it.
    overload_deadlines: list[str] = field(default_factory=lambda: ["1s", "100ms"])
    # The shadow phase (loadtest/shadow.py): a random forest mirror of the
    # linear family, on and off in alternating rounds at shadow_rate req/s.
    shadow_round: float = 10.0  # seconds per round, 6 rounds per cycle
    shadow_cycles: int = 1
    shadow_rate: float = 200.0

    @classmethod
    def quick(cls) -> Settings:
        """Under 2 minutes: the smallest and largest requests, short runs."""
        return cls(rows=[1, 1000], duration=2, fixed_duration=2, wrk_duration=2, in_process_seconds=1.0,
                   batching_rows=[1], paired_rounds=1, paired_duration=2, families=list(QUICK_FAMILIES),
                   family_alone=False, swap_before=2.0, swap_after=1.0, overload_duration=3,
                   overload_factors=[1.0, 2.0], shadow_round=3.0)


# --- processes ----------------------------------------------------------------

def start_baseline(models: Path, port: int, log: Path, workers: int | None = None) -> subprocess.Popen:
    """gunicorn + Flask + sklearn on 127.0.0.1:port, ready to serve."""
    return _start_python(baseline.gunicorn_command(models, f"127.0.0.1:{port}", workers), baseline.gunicorn_env(),
                         port, log, "gunicorn")


def start_fastapi_ort(models: Path, port: int, log: Path, workers: int | None = None) -> subprocess.Popen:
    """FastAPI + uvicorn + ONNX Runtime on 127.0.0.1:port, ready to serve."""
    return _start_python(fastapi_ort.uvicorn_command(models, f"127.0.0.1:{port}", workers),
                         fastapi_ort.uvicorn_env(models), port, log, "uvicorn")


def _start_python(command: list[str], env: dict[str, str], port: int, log: Path, what: str) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        topology.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60, alive=lambda: process.poll() is None,
                           what=what)
    except BaseException:
        processes.terminate(process)
        raise
    return process


def nginx_pids(state: Path) -> list[int]:
    """An nginx's master and workers."""
    master = nginx.pid(state)
    return [master] + processes.children(master) if master else []


def start_nginx_in_front(models: Path, state: Path, port: int, upstream: str) -> None:
    """The stack's nginx configuration (topology/nginx.py), proxying to one
    upstream address instead of the replicas: the same front for a peer."""
    s = StackSettings(models=models, state=state, server=ROOT, port=port, replicas=1)
    state.mkdir(parents=True, exist_ok=True)
    nginx.write(s, nginx.render(s, [upstream]))
    nginx.start(s)
    topology.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60, what="nginx in front of the peer")


# --- load generators ----------------------------------------------------------

@dataclass
class Target:
    """Something to load: predict on a model, or GET a path (a ceiling)."""

    name: str
    url: str
    get_path: str | None  # None: POST predict bodies
    server_pids: object  # () -> list[int]: the processes whose CPU time counts


def locust_command(locustfile: str = "loadtest/locustfile.py") -> list[str]:
    """Locust from this interpreter's environment, run from the repository root."""
    return [sys.executable, "-m", "locust", "-f", locustfile]


def run_locust(target: Target, rows: int, settings: Settings, duration: int, rate: float, prefix: Path,
               model: str, held_out: Path) -> dict:
    """One headless Locust run; returns its summary (loadtest/locustfile.py)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    summary_file = prefix.with_name(prefix.name + "-summary.json")
    summary_file.unlink(missing_ok=True)
    command = locust_command() + [
        "--headless", "--users", str(settings.users), "--spawn-rate", str(settings.users * 4),
        "--run-time", f"{duration}s", "--stop-timeout", "5", "--host", target.url, "--only-summary",
        "--loglevel", "WARNING", "--csv", str(prefix), "--html", str(prefix) + ".html",
        "--summary-file", str(summary_file), "--user-rate", str(rate / settings.users),
        "--model-name", model, "--held-out", str(held_out), "--rows-per-request", str(rows),
        "--bodies", str(max(20, min(500, 200_000 // rows)))]
    command += ["--get-path", target.get_path, "GetUser"] if target.get_path else ["PredictUser"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=duration + 120)
    if not summary_file.exists():
        raise RuntimeError(f"Locust wrote no summary (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(summary_file.read_text())


def predict_path(model: str) -> str:
    return f"/v1/models/{model}:predict"


def check_target(target: Target, bodies: Path, rows: int, model: str) -> None:
    """One request before loading a target: a misconfigured run fails here, not as 10,000 failures."""
    if target.get_path:
        status, answer, _ = exchange("GET", target.url + target.get_path)
    else:
        body = bodies.read_bytes().split(b"\n", 1)[0]
        status, answer, _ = exchange("POST", target.url + predict_path(model), body, {"Content-Type": "application/json"})
    if status != 200:
        raise RuntimeError(f"{target.name} answered {status}: {samples.error_text(answer)}")
    if not target.get_path:
        _, problem = samples.check_prediction(answer, rows, model, 0)
        if problem:
            raise RuntimeError(f"{target.name} answered wrongly: {problem}")


def run_wrk(target: Target, settings: Settings, bodies: Path | None, duration: int, model: str) -> dict:
    """One wrk run (loadtest/wrk.lua prints its numbers as JSON)."""
    url = target.url + (target.get_path or predict_path(model))
    command = ["wrk", "--threads", str(settings.wrk_threads), "--connections", str(settings.wrk_connections),
               "--duration", f"{duration}s", "--timeout", "10s", "--script", str(WRK_SCRIPT), url]
    if bodies is not None:
        command += ["--", str(bodies)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=duration + 60)
    line = next((line for line in done.stdout.splitlines() if line.startswith('{"wrk":')), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(line)["wrk"]


def run_grpc(stack: topology.Topology, rows: int, settings: Settings, bodies: Path, model: str, log) -> dict:
    """One skl2go-load -protocol grpc run through nginx's gRPC port, as long as a wrk
    run and with as many calls in flight as wrk's connections."""
    target = Target("go_grpc_nginx", stack.grpc, None, stack.server_pids)
    before = processes.cpu_seconds(target.server_pids())
    done = subprocess.run([str(LOAD), "-protocol", "grpc", "-addr", stack.grpc, "-model", model, "-bodies", str(bodies),
                           "-duration", f"{settings.wrk_duration}s", "-workers", str(settings.wrk_connections),
                           "-conns", str(2 * settings.wrk_threads)],
                          cwd=ROOT, capture_output=True, text=True, timeout=settings.wrk_duration + 120)
    cpu = processes.cpu_seconds(target.server_pids()) - before
    line = next((line for line in done.stdout.splitlines() if line.startswith('{"load":')), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"skl2go-load failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    run = {**wrk_run(target, rows, json.loads(line)["load"], cpu), "loadgen": "grpcload"}
    log(f"  {run['target']:<17} rows={rows:<5} grpcload peak        {run['rps']:>9,.0f} req/s  "
        f"p99 {fmt(run['p99_ms'])} ms  failures {run['failures']}  cpu {fmt(run['cpu_ms_per_request'])} ms/req")
    return run


def measure(target: Target, rows: int, settings: Settings, out: Path, bodies: Path, model: str,
            held_out: Path, log) -> tuple[list[dict], list[dict]]:
    """The three runs of one target and request size; returns (results, runs)."""
    label = f"{target.name}-rows{rows}"
    check_target(target, bodies, rows, model)
    runs = []
    row_count = 0 if target.get_path else rows

    closed = run_locust(target, rows, settings, settings.duration, 0.0, out / "locust" / label, model, held_out)
    runs.append(locust_run(target, rows, "locust", "back_to_back", closed, None, 0.0))

    rate = settings.fixed_rate[rows]
    before = processes.cpu_seconds(target.server_pids())
    fixed = run_locust(target, rows, settings, settings.fixed_duration, rate,
                       out / "locust" / f"{label}-fixed-rate", model, held_out)
    cpu = processes.cpu_seconds(target.server_pids()) - before
    runs.append(locust_run(target, rows, "locust", "fixed_rate", fixed, cpu, rate))

    before = processes.cpu_seconds(target.server_pids())
    peak = run_wrk(target, settings, None if target.get_path else bodies, settings.wrk_duration, model)
    cpu = processes.cpu_seconds(target.server_pids()) - before
    runs.append(wrk_run(target, rows, peak, cpu))

    results = [
        result(target.name, rows, "locust", runs[0], row_count, cpu_from=runs[1]),
        result(target.name, rows, "wrk", runs[2], row_count, cpu_from=runs[2]),
    ]
    for run in runs:
        log(f"  {run['target']:<17} rows={rows:<5} {run['loadgen']:<6} {run['phase']:<12} "
            f"{run['rps']:>9,.0f} req/s  p99 {fmt(run['p99_ms'])} ms  failures {run['failures']}"
            + (f"  cpu {run['cpu_ms_per_request']:.3f} ms/req" if run["cpu_ms_per_request"] is not None else ""))
    return results, runs


def paired_rounds(a: Target, b: Target, settings: Settings, bodies: Path, model: str, log) -> list[dict]:
    """Two targets under single-record wrk load in alternating rounds (the
    order flips each round, so a drift in the machine's load weighs on
    both): each round's req/s and p99 of each (keyed by target name) and the
    ratio a / b. The same 2 cores carry wrk and every server, so two runs
    of one target minutes apart differ (BENCHMARKS.md): the median of the
    rounds' ratios is what the goals are judged by."""
    rounds = []
    for i in range(settings.paired_rounds):
        order = [a, b] if i % 2 == 0 else [b, a]
        runs = {}
        for target in order:
            wrk = run_wrk(target, settings, None if target.get_path else bodies, settings.paired_duration, model)
            runs[target.name] = wrk_run(target, 1, wrk, 0.0)
        ra, rb = runs[a.name], runs[b.name]
        rounds.append({"round": i + 1, "first": order[0].name,
                       **{f"{t}_rps": runs[t]["rps"] for t in (a.name, b.name)},
                       **{f"{t}_p99_ms": runs[t]["p99_ms"] for t in (a.name, b.name)},
                       "ratio": ra["rps"] / rb["rps"] if rb["rps"] else None,
                       "failures": ra["failures"] + rb["failures"]})
        log(f"  round {i + 1}: {a.name} {ra['rps']:,.0f} req/s, {b.name} {rb['rps']:,.0f} req/s, "
            f"{rounds[-1]['ratio']:.2f}×  failures {rounds[-1]['failures']}")
    return rounds


def locust_run(target: Target, rows: int, loadgen: str, phase: str, summary: dict, cpu: float | None,
               rate: float) -> dict:
    requests = summary["requests"]
    elapsed = summary["locust"]["elapsed_s"]
    return {"target": target.name, "rows_per_request": rows, "loadgen": loadgen, "phase": phase,
            "offered_rps": rate or None, "requests": requests, "failures": summary["failures"],
            "elapsed_s": elapsed, "rps": requests / elapsed if elapsed > 0 else 0.0,
            "p50_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"], "p99_ms": summary["p99_ms"],
            "cpu_s": cpu, "cpu_ms_per_request": 1000 * cpu / requests if cpu is not None and requests else None,
            "versions": summary["versions"], "errors": summary["errors"]}


def wrk_run(target: Target, rows: int, wrk: dict, cpu: float) -> dict:
    errors = wrk["errors"]
    failures = sum(errors.values())
    seconds = wrk["duration_us"] / 1e6
    latency = wrk["latency_us"]
    return {"target": target.name, "rows_per_request": rows, "loadgen": "wrk", "phase": "peak",
            "offered_rps": None, "requests": wrk["requests"], "failures": failures, "elapsed_s": seconds,
            "rps": wrk["requests"] / seconds, "p50_ms": latency["p50"] / 1000, "p95_ms": latency["p95"] / 1000,
            "p99_ms": latency["p99"] / 1000, "cpu_s": cpu,
            "cpu_ms_per_request": 1000 * cpu / wrk["requests"] if wrk["requests"] else None,
            "errors": {k: v for k, v in errors.items() if v}}


def result(target: str, rows: int, loadgen: str, run: dict, row_count: int, cpu_from: dict) -> dict:
    """One entry of bench.json's results, in the shape the issue fixes."""
    return {"target": target, "rows_per_request": rows, "loadgen": loadgen, "rps": run["rps"],
            "rows_per_s": run["rps"] * row_count if row_count else None,
            "p50_ms": run["p50_ms"], "p95_ms": run["p95_ms"], "p99_ms": run["p99_ms"],
            "failures": run["failures"], "cpu_ms_per_request": cpu_from["cpu_ms_per_request"]}


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# --- overload -----------------------------------------------------------------

def run_load(url: str, rate: float, settings: Settings, bodies: Path, model: str) -> dict:
    """One open-loop skl2go-load run at rate req/s; its {"load": ...} line."""
    done = subprocess.run([str(LOAD), "-addr", url, "-model", model, "-bodies", str(bodies), "-rate", f"{rate:.0f}",
                           "-duration", f"{settings.overload_duration}s", "-workers", str(settings.overload_workers),
                           "-timeout", "10s"],
                          cwd=ROOT, capture_output=True, text=True, timeout=settings.overload_duration + 60)
    line = next((line for line in done.stdout.splitlines() if line.startswith('{"load":')), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"skl2go-load failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(line)["load"]


def measure_overload(stack: topology.Topology, capacity: float, settings: Settings, bodies: Path, model: str,
                     log) -> list[dict]:
    """Single-record predict through nginx, open loop, at each factor of the
    stack's capacity (go_nginx's wrk req/s): at capacity nothing should be
    shed; beyond it the excess should get fast 503s with Retry-After, the
    replicas' skl2go_shed_total counting them, rather than every answer
    slowing down. The 200s' latency is from when each request was due, as
    wrk2's (the generator's own backlog counts), and from when it was sent;
    the 503s' from when each was sent: how fast the refusal came."""
    out = []
    replicas = range(1, len(stack.replicas) + 1)
    for factor in settings.overload_factors:
        shed_before = [stack.metric(n, "skl2go_shed_total") for n in replicas]
        load = run_load(stack.url, factor * capacity, settings, bodies, model)
        shed = [stack.metric(n, "skl2go_shed_total") - b for n, b in zip(replicas, shed_before)]
        unavailable = load["unavailable"]
        ms = lambda latency, p: latency[p] / 1000 if latency[p] else None  # noqa: E731
        r = {"factor": factor, "offered_rps": round(factor * capacity), "achieved_rps": load["achieved_rps"],
             "sent": load["requests"], "ok": load["ok"],
             "unavailable_retry_after": unavailable["count"] - unavailable["no_retry_after"],
             "unavailable_no_retry_after": unavailable["no_retry_after"],
             "other_errors": sum(n for kind, n in load["errors"].items() if kind != "status 503"),
             "errors": load["errors"], "first_errors": load["first_errors"], "late": load["late"],
             "ok_p50_ms": ms(load["latency_us"], "p50"), "ok_p99_ms": ms(load["latency_us"], "p99"),
             "ok_sent_p50_ms": ms(load["service_us"], "p50"), "ok_sent_p99_ms": ms(load["service_us"], "p99"),
             "unavailable_p50_ms": ms(unavailable["latency_us"], "p50"),
             "unavailable_p99_ms": ms(unavailable["latency_us"], "p99"),
             "shed_total": shed}
        out.append(r)
        log(f"  {factor:.1f}x capacity {r['offered_rps']:>7,} req/s offered: sent {r['sent']:,}, 200 {r['ok']:,} "
            f"(p50/p99 {fmt(r['ok_p50_ms'])}/{fmt(r['ok_p99_ms'])} ms from due, {fmt(r['ok_sent_p50_ms'])}/{fmt(r['ok_sent_p99_ms'])} from sent), 503 {r['unavailable_retry_after']:,} "
            f"with Retry-After + {r['unavailable_no_retry_after']:,} without (p50/p99 {fmt(r['unavailable_p50_ms'])}/"
            f"{fmt(r['unavailable_p99_ms'])} ms), other errors {r['other_errors']:,}, shed_total {shed}")
    return out


def overload_phase(models: Path, capacity: float, settings: Settings, work: Path, bodies: Path, model: str,
                   log) -> list[dict]:
    """bench.json's "overload": measure_overload on a stack per deadline
    (the replicas' --queue-timeout). Last of the run, and every stack
    started before any load: thousands of connections leave as many ports
    in TIME_WAIT for a minute, where a free port search (free_ports) finds
    no block of consecutive free ones."""
    out = []
    with contextlib.ExitStack() as cleanup:
        stacks = {}
        for deadline in settings.overload_deadlines:
            port = free_ports(1)
            base = free_ports(4, avoid=[port])
            stacks[deadline] = topology.start(models, work / f"topology-overload-{deadline}", replicas=2,
                                              PORT=str(port), BASE_PORT=str(base), SKL2GO_LOG_LEVEL="warn",
                                              SKL2GO_QUEUE_TIMEOUT=deadline, **BATCHING[DEFAULT_BATCHING])
            cleanup.callback(stacks[deadline].down)
        for deadline, stack in stacks.items():
            log(f"[bench] overload, --queue-timeout {deadline}: single-record predict through nginx, open loop, "
                f"at {', '.join(f'{f:.2f}' for f in settings.overload_factors)} x {capacity:,.0f} req/s "
                "(go_nginx's wrk req/s)")
            out += [{"deadline": deadline, **r} for r in measure_overload(stack, capacity, settings, bodies, model, log)]
    return out


# --- model families -----------------------------------------------------------

def family_names(models: Path) -> dict[str, str]:
    """family -> model name, from each model's latest model.json."""
    found = {}
    for name, version_dir in repository.latest(models).items():
        family = repository.load_metadata(version_dir).get("family")
        if family in tasks.TASKS:
            found.setdefault(family, name)
    return found


def copy_latest(source: Path, names: list[str], dest: Path) -> Path:
    """A repository of the latest version of each named model (the swap publishes into it, not into source)."""
    for name in names:
        version_dir = repository.latest_version(source, name)
        shutil.copytree(version_dir, dest / name / version_dir.name)
    return dest


def rss_mb(pids: list[int]) -> list[float]:
    return [round(processes.rss_bytes(pid) / 2**20, 1) for pid in pids]


def measure_families(source: Path, settings: Settings, work: Path, log) -> dict:
    """The families phase (see FAMILY_ROWS): bench.json's families, memory and hot_reload."""
    names = family_names(source / "models")
    missing = [f for f in settings.families if f not in names]
    if missing:
        raise FileNotFoundError(f"{source}/models has no model of the families {', '.join(missing)}: "
                                "run `make parity` (or train and export them there)")
    models = copy_latest(source / "models", list(names.values()), work / "families" / "models")
    bodies = {}
    for family in settings.families:
        held_out = samples.held_out_features(source / "build" / names[family])
        for rows in (r for r in settings.rows if r in FAMILY_ROWS):
            bodies[family, rows] = samples.write_bodies(
                work / "families" / f"bodies-{family}-{rows}.jsonl",
                samples.request_bodies(held_out, rows, max(20, min(500, 200_000 // rows))))
    if not any(r in FAMILY_ROWS for r in settings.rows):
        raise ValueError(f"the families are measured at {FAMILY_ROWS} rows per request: --rows has neither")
    out = {"families": [], "memory": {}, "hot_reload": None}
    port = free_ports(1)
    base = free_ports(4, avoid=[port])
    log(f"[bench] model families through nginx: {', '.join(settings.families)} "
        f"({len(names)} families loaded on each replica)")
    stack = topology.start(models, work / "topology-families", replicas=2, PORT=str(port), BASE_PORT=str(base),
                           SKL2GO_LOG_LEVEL="warn", **BATCHING[DEFAULT_BATCHING])
    try:
        loaded = rss_mb(stack.pids())
        # every family's load time at start-up, by replica (skl2go_model_load_seconds)
        out["memory"]["load_seconds_at_start"] = {
            family: [stack.metric(n, "skl2go_model_load_seconds", f'model="{name}"')
                     for n in range(1, len(stack.replicas) + 1)] for family, name in sorted(names.items())}
        target = Target("go_nginx", stack.url, None, stack.server_pids)
        for family in settings.families:
            for rows in (r for r in settings.rows if r in FAMILY_ROWS):
                check_target(target, bodies[family, rows], rows, names[family])
                before = processes.cpu_seconds(target.server_pids())
                peak = run_wrk(target, settings, bodies[family, rows], settings.wrk_duration, names[family])
                cpu = processes.cpu_seconds(target.server_pids()) - before
                measured = wrk_run(target, rows, peak, cpu)
                r = {**result(target.name, rows, "wrk", measured, rows, cpu_from=measured),
                     "family": family, "task": tasks.task_of(family), "model": names[family]}
                out["families"].append(r)
                log(f"  {family:<34} rows={rows:<5} wrk {r['rps']:>9,.0f} req/s  p99 {fmt(r['p99_ms'])} ms  "
                    f"failures {r['failures']}  cpu {fmt(r['cpu_ms_per_request'])} ms/req")
        warm = rss_mb(stack.pids())
        out["memory"]["all_families"] = {
            "families": sorted(names), "replicas": len(loaded),
            "rss_mb_after_load": loaded, "rss_mb_after_requests": warm}
        log(f"[bench] replica RSS with {len(names)} families loaded: {loaded} MiB after load, "
            f"{warm} MiB after the families' runs")
        if LARGEST_FOREST in names:
            forest = names[LARGEST_FOREST]
            one_row = samples.request_bodies(samples.held_out_features(source / "build" / forest), 1, 200)
            onnx_mb = sum(p.stat().st_size for p in repository.latest_version(models, forest).glob("*.onnx")) / 2**20
            swapped = swap.swap(stack, models, forest, one_row, before=settings.swap_before,
                                after=settings.swap_after, clients=settings.swap_clients)
            swapped.pop("answers")
            for key in ("published_at", "ready_at"):
                swapped.pop(key)
            out["hot_reload"] = {"family": LARGEST_FOREST, "onnx_mb": round(onnx_mb, 1), **swapped}
            log(f"[bench] {forest} version {swapped['old_version']} -> {swapped['new_version']} ({onnx_mb:.1f} MiB ONNX): "
                f"publish to every replica serving it {swapped['publish_to_ready_s']:.2f} s, replicas' load "
                f"{', '.join(f'{s:.2f}' for s in swapped['load_seconds'])} s; p99/max ms before "
                f"{swapped['before']['p99_ms']:.2f}/{swapped['before']['max_ms']:.2f}, during "
                f"{swapped['during']['p99_ms']:.2f}/{swapped['during']['max_ms']:.2f} "
                f"({swapped['during']['requests']} requests answered while it loaded), failures "
                f"{swapped['before']['failures'] + swapped['during']['failures'] + swapped['after']['failures']}")
    finally:
        stack.down()
    if settings.family_alone:
        out["memory"]["alone"] = []
        for family in settings.families:
            alone = copy_latest(models, [names[family]], work / "families" / f"alone-{family}")
            port = free_ports(1)
            base = free_ports(2, avoid=[port])
            stack = topology.start(alone, work / f"topology-alone-{family}", replicas=1, PORT=str(port),
                                   BASE_PORT=str(base), SKL2GO_LOG_LEVEL="warn", **BATCHING[DEFAULT_BATCHING])
            try:
                loaded = rss_mb(stack.pids())[0]
                warm_bodies = bodies[family, max(r for r in settings.rows if r in FAMILY_ROWS)]
                run_wrk(Target("go_nginx", stack.url, None, stack.server_pids), settings, warm_bodies,
                        settings.family_warmup, names[family])
                warm = rss_mb(stack.pids())[0]
            finally:
                stack.down()
            out["memory"]["alone"].append({"family": family, "rss_mb_after_load": loaded,
                                           "rss_mb_after_requests": warm})
            log(f"  {family:<34} alone: RSS {loaded} MiB after load, {warm} MiB after {settings.family_warmup} s of requests")
    return out


# --- sklearn in process -------------------------------------------------------

def measure_shadow(source: Path, settings: Settings, work: Path, log) -> dict:
    """A slow mirror (the largest forest) of the linear family, on and off
    in alternating rounds through nginx and 2 replicas (loadtest/shadow.py)."""
    names = family_names(source / "models")
    missing = [f for f in ("linear", LARGEST_FOREST) if f not in names]
    if missing:
        raise FileNotFoundError(f"{source}/models has no model of the families {', '.join(missing)}: "
                                f"the shadow phase mirrors linear with {LARGEST_FOREST}")
    control = repository.latest_version(source / "models", names["linear"])
    mirror = repository.latest_version(source / "models", names[LARGEST_FOREST])
    rows = samples.held_out_features(source / "build" / names["linear"])
    bodies = samples.write_bodies(work / "bodies-shadow-100.jsonl", samples.request_bodies(rows, 100, 500))
    log(f"[bench] a {LARGEST_FOREST} mirror of linear, on and off, {settings.shadow_cycles} cycle(s)")
    return shadow.measure(control, mirror, bodies, work / "shadow", settings.shadow_rate, settings.shadow_round,
                          settings.shadow_cycles, log, SKL2GO_LOG_LEVEL="warn")


def sklearn_in_process(pipeline_file: Path, held_out: pd.DataFrame, rows_list: list[int], seconds: float) -> list[dict]:
    """sklearn's own predict on DataFrames of held-out rows, one thread, no
    HTTP: what the Go server's rows/s is compared with on big requests."""
    pipeline = joblib.load(pipeline_file)
    measured = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found unknown categories")
        for rows in rows_list:
            frame = held_out.sample(n=rows, replace=rows > len(held_out), random_state=0).reset_index(drop=True)
            pipeline.predict(frame)
            calls, started = 0, time.perf_counter()
            while calls < 3 or time.perf_counter() - started < seconds:
                pipeline.predict(frame)
                calls += 1
            elapsed = time.perf_counter() - started
            measured.append({"what": "sklearn_predict_in_process", "rows_per_request": rows,
                             "ms_per_call": 1000 * elapsed / calls, "rows_per_s": rows * calls / elapsed})
    return measured


# --- the run ------------------------------------------------------------------

def machine() -> dict:
    """What the numbers were measured on."""
    def first(path: str, key: str) -> str:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        return ""

    def version(command: list[str]) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        return ""

    from importlib.metadata import version as package
    return {
        "cpu": first("/proc/cpuinfo", "model name"), "cores": os.cpu_count(),
        "memory_gib": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "nginx": version(["nginx", "-v"]), "wrk": version(["wrk", "--version"]),
        "locust": package("locust"), "gunicorn": package("gunicorn"), "flask": package("flask"),
        "scikit-learn": package("scikit-learn"), "onnxruntime": package("onnxruntime"),
        "uvicorn": package("uvicorn"), "uvloop": package("uvloop"), "httptools": package("httptools"),
        "commit": version(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "load_average_at_start": os.getloadavg()[0],
    }


def run(args: argparse.Namespace, settings: Settings) -> dict:
    out = Path(args.out).resolve()
    work = out / "bench-run"  # bodies, logs, the topology's state
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out / "locust", ignore_errors=True)
    work.mkdir(parents=True)
    models, held_out_dir = Path(args.models).resolve(), Path(args.held_out or f"build/{args.name}").resolve()
    log = print if not args.quiet else (lambda *a, **k: None)
    started = time.monotonic()

    held_out = samples.held_out_features(held_out_dir)
    try:
        version_dir = repository.latest_version(models, args.name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}: run `make train export` first") from None
    bodies = {rows: samples.write_bodies(work / f"bodies-{rows}.jsonl",
                                         samples.request_bodies(held_out, rows, max(20, min(500, 200_000 // rows))))
              for rows in settings.rows}
    bench = {"machine": machine(), "results": [], "runs": [], "batching": [],
             "settings": {**settings.__dict__, "model": args.name, "version": int(version_dir.name),
                          "family": repository.load_metadata(version_dir).get("family"),
                          "default_batching": DEFAULT_BATCHING, "batching_settings": BATCHING}}
    log(f"[bench] {args.name} version {version_dir.name}, rows per request {settings.rows}; reports in {out}")
    bench["in_process"] = sklearn_in_process(version_dir / repository.PIPELINE_FILE, held_out, settings.rows,
                                             settings.in_process_seconds)
    for m in bench["in_process"]:
        log(f"[bench] sklearn predict in process, {m['rows_per_request']} rows: {m['ms_per_call']:.2f} ms, "
            f"{m['rows_per_s']:,.0f} rows/s")

    with contextlib.ExitStack() as cleanup:
        gunicorn_port = free_ports(1)
        gunicorn = start_baseline(models, gunicorn_port, work / "logs" / "gunicorn.log")
        cleanup.callback(processes.terminate, gunicorn)
        sklearn = Target("sklearn_gunicorn", f"http://127.0.0.1:{gunicorn_port}", None,
                         lambda: [gunicorn.pid] + processes.children(gunicorn.pid))
        fastapi_port = free_ports(2, avoid=[gunicorn_port])
        front_port = fastapi_port + 1
        uvicorn = start_fastapi_ort(models, fastapi_port, work / "logs" / "uvicorn.log")
        cleanup.callback(processes.terminate, uvicorn)
        front = work / "nginx-fastapi"
        start_nginx_in_front(models, front, front_port, f"127.0.0.1:{fastapi_port}")
        cleanup.callback(nginx.stop, front)
        peer = [
            Target("fastapi_ort", f"http://127.0.0.1:{fastapi_port}", None,
                   lambda: [uvicorn.pid] + processes.children(uvicorn.pid)),
            Target("fastapi_ort_nginx", f"http://127.0.0.1:{front_port}", None,
                   lambda: [uvicorn.pid] + processes.children(uvicorn.pid) + nginx_pids(front)),
        ]
        variants = [DEFAULT_BATCHING] + ([v for v in BATCHING if v != DEFAULT_BATCHING] if settings.batching_rows else [])
        for variant in variants:
            port = free_ports(1)
            bench_port = free_ports(1, avoid=[port])
            slug = variant.replace(", ", "-")
            base = free_ports(4, avoid=[port, bench_port])
            stack = topology.start(models, work / f"topology-batching-{slug}", replicas=2, PORT=str(port),
                                   BASE_PORT=str(base), BENCH_LISTEN=f"127.0.0.1:{bench_port}",
                                   SKL2GO_LOG_LEVEL="warn", **BATCHING[variant])
            cleanup.callback(stack.down)
            go = [
                Target("go_direct", stack.replicas[0], None, stack.server_pids),
                Target("go_nginx", stack.url, None, stack.server_pids),
            ]
            ceilings = [
                Target("nginx_static", f"http://127.0.0.1:{bench_port}", "/", stack.server_pids),
                Target("nginx_go_healthz", stack.url, "/healthz", stack.server_pids),
            ]
            if variant == DEFAULT_BATCHING:
                log(f"[bench] batching {variant}: all targets")
                for rows in settings.rows:
                    targets = [sklearn, *peer, *go] + (ceilings if rows == settings.rows[0] else [])
                    for target in targets:
                        results, runs = measure(target, rows, settings, out, bodies[rows], args.name,
                                                held_out_dir, log)
                        bench["results"] += results
                        bench["runs"] += runs
                        if target.name.startswith("go_") and rows in settings.batching_rows:
                            bench["batching"] += [{**r, "batching": variant} for r in results]
                for rows in (r for r in settings.rows if r in GRPC_ROWS):
                    bench.setdefault("grpc", []).append(run_grpc(stack, rows, settings, bodies[rows], args.name, log))
                if 1 in settings.rows and settings.paired_rounds:
                    log(f"[bench] predict vs /healthz through nginx, {settings.paired_rounds} alternating rounds")
                    bench["paired"] = paired_rounds(go[1], ceilings[1], settings, bodies[1], args.name, log)
                    log(f"[bench] nginx + 2 Go vs FastAPI + ORT behind the same nginx, {settings.paired_rounds} "
                        "alternating rounds")
                    bench["peer_paired"] = paired_rounds(go[1], peer[1], settings, bodies[1], args.name, log)
            else:
                log(f"[bench] batching {variant}: the Go targets")
                for rows in settings.batching_rows:
                    for target in go:
                        results, runs = measure(target, rows, settings, out / f"batching-{slug}", bodies[rows],
                                                args.name, held_out_dir, log)
                        bench["batching"] += [{**r, "batching": variant} for r in results]
                        bench["runs"] += [{**r, "batching": variant} for r in runs]
            stack.down()
        stacks = {}
        for name, extra in ((INFERENCE_LOG_OFF_TARGET, {}), (INFERENCE_LOG_TARGET, INFERENCE_LOG)):
            port = free_ports(1)
            base = free_ports(4, avoid=[port])
            stacks[name] = topology.start(models, work / f"topology-{name}", replicas=2, PORT=str(port),
                                          BASE_PORT=str(base), SKL2GO_LOG_LEVEL="warn", **BATCHING[DEFAULT_BATCHING],
                                          **extra)
            cleanup.callback(stacks[name].down)
        logged = stacks[INFERENCE_LOG_TARGET]
        log(f"[bench] the inference log at 0% and 100%, in turn: {INFERENCE_LOG_OFF_TARGET}, {INFERENCE_LOG_TARGET}")
        for rows in settings.rows:
            for name, stack in stacks.items():
                target = Target(name, stack.url, None, stack.server_pids)
                results, runs = measure(target, rows, settings, out, bodies[rows], args.name, held_out_dir, log)
                bench["results"] += results
                bench["runs"] += runs
        bench["inference_log"] = {what: sum(logged.metric(n, f"skl2go_inference_log_{what}_total") for n in (1, 2))
                                  for what in ("written", "dropped")}
        log(f"[bench] inference log: {bench['inference_log']['written']:,.0f} records written, "
            f"{bench['inference_log']['dropped']:,.0f} dropped")
        for stack in stacks.values():
            stack.down()
    if args.families:
        bench.update(measure_families(Path(args.families).resolve(), settings, work, log))
        if settings.shadow_cycles:
            bench["shadow"] = measure_shadow(Path(args.families).resolve(), settings, work, log)
    capacity = next((r["rps"] for r in bench["results"]
                     if r["target"] == "go_nginx" and r["rows_per_request"] == 1 and r["loadgen"] == "wrk"), None)
    if capacity and settings.overload_factors:
        bench["overload"] = overload_phase(models, capacity, settings, work, bodies[1], args.name, log)
    bench["machine"]["load_average_at_end"] = os.getloadavg()[0]
    bench["elapsed_s"] = round(time.monotonic() - started, 1)
    return bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (make bench QUICK=1)")
    parser.add_argument("--models", default="models", help="model repository")
    parser.add_argument("--name", default="trip_duration", help="model to load")
    parser.add_argument("--held-out", default="", help="build/<name>: validation.parquet and training.json")
    parser.add_argument("--out", default="reports", help="where the reports go")
    parser.add_argument("--rows", default="", help="request sizes, comma-separated (default 1,100,1000)")
    parser.add_argument("--duration", type=int, default=0, help="seconds per run (all three kinds)")
    parser.add_argument("--rounds", type=int, default=-1,
                        help="alternating rounds of predict and /healthz through nginx (default 5; 0: none)")
    parser.add_argument("--no-batching", action="store_true", help="skip the dynamic batching comparison")
    parser.add_argument("--families", default="",
                        help="a repository of one model per family (DIR/models, DIR/build), as `make parity` "
                             "leaves build/parity: measure each family, the replicas' memory and a hot reload")
    parser.add_argument("--only-families", default="", help="the families to measure, comma-separated")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    if args.rows:
        settings.rows = [int(r) for r in args.rows.split(",")]
        settings.fixed_rate = {r: settings.fixed_rate.get(r, 10.0) for r in settings.rows}
        settings.batching_rows = [r for r in settings.batching_rows if r in settings.rows]
    if args.duration:
        settings.duration = settings.fixed_duration = settings.wrk_duration = settings.paired_duration = args.duration
    if args.rounds >= 0:
        settings.paired_rounds = args.rounds
    if args.no_batching:
        settings.batching_rows = []
    if args.only_families:
        settings.families = args.only_families.split(",")
        unknown = [f for f in settings.families if f not in tasks.TASKS]
        if unknown:
            parser.error(f"--only-families: unknown family {unknown[0]!r}; choose among {', '.join(tasks.FAMILIES)}")
    if args.duration:
        settings.family_warmup = settings.overload_duration = args.duration
        settings.swap_before = settings.swap_after = args.duration
    if not LOAD.exists():
        print(f"bench: {LOAD} not found: run `make build`", file=sys.stderr)
        return 2
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed: run `make {tool}` (apt-get install {tool})")

    # SIGTERM (e.g. from a CI timeout) unwinds like Ctrl-C, so everything started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = run(args, settings)
    out = Path(args.out)
    (out / "bench.json").write_text(json.dumps(bench, indent=2) + "\n")
    report.write(bench, out)
    print(f"[bench] wrote {out}/bench.json, bench.md, bench.png and Locust's reports in {out}/locust "
          f"({bench['elapsed_s']:.0f}s)")
    reload = bench.get("hot_reload") or {}
    failures = sum(r["failures"] for r in bench["results"] + bench["batching"] + bench.get("paired", [])
                   + bench.get("peer_paired", [])
                   + bench.get("families", []) + [reload.get(k, {"failures": 0}) for k in ("before", "during", "after")])
    failures += bench.get("shadow", {}).get("wrong_answers", 0)
    if failures:
        print(f"[bench] {failures} failed requests: see the Locust reports and bench.json's runs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
