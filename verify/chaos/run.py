"""The chaos run: with skl2go-load sending held-out trips through nginx at a
fixed rate, a fraction of the capacity measured at the start of the run
(wrk, single-record predicts through nginx), inflict one fault per scenario
on a real topology (2 Go replicas behind nginx) and count what the load
saw. A scenario passes when no request was lost (every answer checked and
200), no answer was a 5xx, and its own checks hold.

Scenarios, in order: kill -9 a replica and restart it; SIGTERM a replica and
restart it; kill -9 a replica under gRPC load as well (skl2go-load -protocol
grpc through nginx's gRPC port, every failed call counted); `make rollout`;
`make up` again with the same settings (nothing restarted); scale 2 -> 3 -> 2
replicas with `make up REPLICAS=…`; publish a new good version; publish a
corrupt version; an experiment changed under load; its mirror overloaded
(experiments.py); malformed bodies (hypothesis); slow clients (slowloris);
then, on replicas serving from a real MLflow registry, the alias moved and
the registry down (registry.py; not in --short).
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from loadtest import paced
import topology
from topology import ROOT, Topology, processes, request, wait_until
from train import export, repository
from verify.chaos import experiments, faults, malformed

MODEL = "trip_duration"


@dataclass
class Settings:
    load_fraction: float = 0.4  # of the capacity measured at the start: the load's rate
    rate: float = 0.0  # requests/s; 0: load_fraction × the capacity measured
    capacity_seconds: int = 5  # the wrk run that measures the capacity
    workers: int = 256  # requests in flight at most (skl2go-load -workers)
    warmup: float = 3.0  # seconds of load before each fault
    settle: float = 3.0  # seconds of load after the fault is over
    malformed: int = 2_000  # malformed requests in fuzzed_bodies
    slow_clients: int = 200  # slowloris connections in slow_client
    client_timeout: int = 3  # nginx's CLIENT_TIMEOUT, seconds
    go_fuzz_time: str = "60s"  # per Go fuzz target; "" skips the Go fuzz run
    registry: int = 1  # 1: also the MLflow registry scenarios (alias_moved, registry_down)
    only: str = ""  # comma-separated scenario names to run alone (the experiment ones need publish_good_version)


SHORT = Settings(load_fraction=0.05, capacity_seconds=2, workers=64, warmup=1.5, settle=1.5, malformed=300,
                 slow_clients=40, client_timeout=2, go_fuzz_time="", registry=0)


@dataclass
class Outcome:
    scenario: str
    requests: int = 0
    failures: int = 0
    status_5xx: int = 0
    versions_served: dict = field(default_factory=dict)
    passed: bool = False
    did: str = ""  # what the scenario did, for chaos.md
    checks: list = field(default_factory=list)  # (description, held)
    errors: dict = field(default_factory=dict)  # each kind of failure with its first message: count
    load: dict = field(default_factory=dict)  # skl2go-load's result line

    def check(self, description: str, held: bool) -> bool:
        self.checks.append((description, bool(held)))
        return bool(held)

    def as_json(self) -> dict:
        return {"scenario": self.scenario, "requests": self.requests, "failures": self.failures,
                "status_5xx": self.status_5xx, "versions_served": self.versions_served, "passed": self.passed,
                "load": {k: self.load.get(k) for k in ("rate", "achieved_rps", "resent", "late", "latency_us")}}


def eventually(condition, timeout: float) -> bool:
    """Whether condition() becomes true within timeout seconds (polled every 0.2 s)."""
    try:
        wait_until("a condition", condition, timeout=timeout, interval=0.2)
        return True
    except TimeoutError:
        return False


def successes(topo: Topology, replica: int) -> float:
    return topo.metric(replica, "skl2go_inference_request_success_total")


def back_in_rotation(topo: Topology, replica: int) -> bool:
    """Whether nginx sends replica requests again within 30 s (it rests a
    replica that refused connections for FAIL_TIMEOUT seconds)."""
    before = successes(topo, replica)
    return eventually(lambda: successes(topo, replica) > before, timeout=30)


# --- the scenarios: each inflicts its fault under load and records its checks --------------------


def kill_replica(topo: Topology, ctx: dict, out: Outcome) -> None:
    pid = topo.pids()[0]
    os.kill(pid, signal.SIGKILL)
    wait_until("the killed replica to be gone", lambda: not processes.running(pid), timeout=10)
    topo.start_replica(1)
    out.did = f"kill -9 replica 1 (pid {pid}), start it again ({topo.pids()[0]})"
    out.check("replica 1 restarted with a new pid", topo.pids()[0] != pid)
    out.check("replica 1 serves through nginx again", back_in_rotation(topo, 1))


def sigterm_replica(topo: Topology, ctx: dict, out: Outcome) -> None:
    pid = topo.pids()[1]
    os.kill(pid, signal.SIGTERM)
    wait_until("the replica to finish its requests and exit", lambda: not processes.running(pid), timeout=40)
    log = (topo.state / "logs" / "replica-2.log").read_text()
    topo.start_replica(2)
    out.did = f"SIGTERM replica 2 (pid {pid}): drained and exited; start it again ({topo.pids()[1]})"
    out.check('replica 2 shut down gracefully (logged "stopped")', '"msg":"stopped"' in log)
    out.check("replica 2 serves through nginx again", back_in_rotation(topo, 2))


def grpc_kill_replica(topo: Topology, ctx: dict, out: Outcome) -> None:
    """kill -9 replica 1 while skl2go-load also sends single-row ModelInfer
    calls through nginx's gRPC port at a quarter of the REST rate (retrying
    UNAVAILABLE, as a client's retry policy does); then start it again. No
    call may fail."""
    s = ctx["settings"]
    load = paced.Load(topo.grpc, ctx["bodies"], s.rate / 4, s.workers, ctx["work"] / "grpc-load.log", MODEL,
                      protocol="grpc", extra=("-conns", "2", "-retries", "3"))
    try:
        time.sleep(s.warmup)
        pid = topo.pids()[0]
        os.kill(pid, signal.SIGKILL)
        wait_until("the killed replica to be gone", lambda: not processes.running(pid), timeout=10)
        topo.start_replica(1)
        time.sleep(s.settle)
    finally:
        result = load.stop()
    failed = paced.failures(result)
    out.failures += failed  # the REST requests are the scenario's count; the gRPC calls are in `did`
    out.did = (f"kill -9 replica 1 (pid {pid}) under REST and gRPC load, start it again: "
               f"{result['requests']:,} gRPC calls at {result['achieved_rps']:,.0f}/s, {failed} failed, "
               f"{result['retries']} retried on UNAVAILABLE")
    out.errors.update({f"gRPC {line}": n for line, n in paced.error_lines(result).items()})
    out.check("skl2go-load sent gRPC calls throughout", result["requests"] > 0)
    out.check("no gRPC call failed", failed == 0)
    out.check("replica 1 serves through nginx again", back_in_rotation(topo, 1))


def rollout(topo: Topology, ctx: dict, out: Outcome) -> None:
    before = topo.pids()
    done = topo.rollout()
    after = topo.pids()
    out.did = f"make rollout: replicas {before} -> {after}"
    out.check("make rollout succeeded", done.returncode == 0)
    out.check("every replica restarted", all(a != b for a, b in zip(before, after)))


def make_up_again(topo: Topology, ctx: dict, out: Outcome) -> None:
    before, master = topo.pids(), topo.nginx_pid()
    done = topo.up()
    said = next((line for line in done.stdout.splitlines() if "nothing changed" in line), done.stdout.strip()[-200:])
    out.did = f"make up again with the same settings: {said}"
    out.check("make up succeeded", done.returncode == 0)
    out.check('it changed nothing ("nothing changed")', "nothing changed" in done.stdout)
    out.check("no replica restarted, nginx not restarted", topo.pids() == before and topo.nginx_pid() == master)


def scale_2_3_2(topo: Topology, ctx: dict, out: Outcome) -> None:
    before, master = topo.pids(), topo.nginx_pid()
    more = topo.up(REPLICAS="3")
    out.check("make up REPLICAS=3 succeeded", more.returncode == 0)
    out.check("3 replicas, the 2 running kept", len(topo.replicas) == 3 and topo.pids()[:2] == before)
    out.check("replica 3 serves through nginx", back_in_rotation(topo, 3))
    fewer = topo.up(REPLICAS="2")
    out.check("make up REPLICAS=2 succeeded", fewer.returncode == 0)
    out.check("2 replicas, the same 2 as before", topo.pids() == before)
    out.check("nginx reloaded, never restarted", topo.nginx_pid() == master)
    out.did = "make up REPLICAS=3, then make up REPLICAS=2: one replica added, then retired; nginx reloaded each time"


def publish_good_version(topo: Topology, ctx: dict, out: Outcome) -> None:
    old = ctx["version"]
    with warnings.catch_warnings():  # sklearn on unseen zones in the held-out rows: expected
        warnings.simplefilter("ignore", UserWarning)
        new = int(export.export(MODEL, ctx["build"], ctx["models"]).name)
    ctx["version"], ctx["expect_versions"] = new, {str(old), str(new)}
    out.did = f"python -m train export published version {new} beside {old} (temp dir, then rename)"
    out.check(f"every replica swapped in version {new} (and unloaded {old})",
              eventually(lambda: topo.served_versions(MODEL) == [[new]] * len(topo.replicas), timeout=60))


def publish_corrupt_version(topo: Topology, ctx: dict, out: Outcome) -> None:
    def refusals() -> list[float]:
        return [topo.metric(r, "skl2go_model_load_failures_total") for r in range(1, len(topo.replicas) + 1)]

    before = refusals()
    broken = faults.publish_corrupt(ctx["models"] / MODEL)
    ctx["cleanup"] = lambda: shutil.rmtree(broken)
    out.did = (f"published version {broken.name} with model.onnx cut in half (checksum matching); "
               f"removed it after the scenario")
    out.check(f"every replica refused version {broken.name} (skl2go_model_load_failures_total +1)",
              eventually(lambda: refusals() == [n + 1 for n in before], timeout=60))
    out.check(f"every replica kept serving version {ctx['version']}",
              topo.served_versions(MODEL) == [[ctx["version"]]] * len(topo.replicas))
    logs = [(topo.state / "logs" / f"replica-{r}.log").read_text() for r in range(1, len(topo.replicas) + 1)]
    out.check("each refusal logged with the directory",
              all(f'"path":"{broken}"' in log and "model version refused" in log for log in logs))


def fuzzed_bodies(topo: Topology, ctx: dict, out: Outcome) -> None:
    _, meta = request("GET", f"{topo.url}/v1/models/{MODEL}")
    pids = topo.pids()
    host, port = topo.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    statuses: collections.Counter = collections.Counter()
    bad: list[str] = []

    @settings(max_examples=max(1, ctx["settings"].malformed // 10), deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(malformed.requests(meta), min_size=10, max_size=10))
    def send_all(batch: list[malformed.Request]) -> None:
        for req in batch:
            status, answer = malformed.send(conn, req)
            statuses[status] += 1
            if not (400 <= status < 500 and isinstance(answer, dict) and answer.get("error")) and len(bad) < 5:
                bad.append(f"{req}: {status} {answer}")

    send_all()
    conn.close()
    sent = sum(statuses.values())
    out.status_5xx += sum(n for status, n in statuses.items() if status >= 500)
    out.did = f"{sent:,} malformed v1/v2 requests (hypothesis) through nginx: statuses {dict(sorted(statuses.items()))}"
    out.check("every malformed request answered 4xx with a JSON error", not bad and sent > 0)
    out.check("no replica restarted", topo.pids() == pids and all(processes.running(p) for p in pids))
    out.errors.update({f"malformed: {b}": 1 for b in bad})


def slow_client(topo: Topology, ctx: dict, out: Outcome) -> None:
    s = ctx["settings"]
    host, port = topo.url.removeprefix("http://").split(":")
    path = f"/v1/models/{MODEL}:predict"
    slow = faults.slow_clients(host, int(port), s.slow_clients, path, hold=s.client_timeout * 10)
    closed = [faults.closed_by_server(conn, s.client_timeout * 5) for conn in slow]
    for conn in slow:
        conn.close()
    out.did = (f"{s.slow_clients} slowloris connections (headers never finished) held open through nginx "
               f"(CLIENT_TIMEOUT={s.client_timeout}s)")
    out.check(f"nginx closed all {s.slow_clients} slow connections", all(closed))


SCENARIOS = [("kill_replica", kill_replica), ("sigterm_replica", sigterm_replica),
             ("grpc_kill_replica", grpc_kill_replica), ("rollout", rollout),
             ("make_up_again", make_up_again), ("scale_2_3_2", scale_2_3_2),
             ("publish_good_version", publish_good_version), ("publish_corrupt_version", publish_corrupt_version),
             ("experiment_changed", lambda t, c, o: experiments.experiment_changed(t, c, o, eventually)),
             ("shadow_overloaded", lambda t, c, o: experiments.shadow_overloaded(t, c, o, eventually)),
             ("fuzzed_bodies", fuzzed_bodies), ("slow_client", slow_client)]


def run_scenario(name, action, topo: Topology, ctx: dict, s: Settings, work: Path) -> Outcome:
    out = Outcome(name)
    ctx["expect_versions"] = {str(ctx["version"])}
    answered = sum(successes(topo, r) for r in range(1, len(topo.replicas) + 1))
    ctx["bodies"] = paced.bodies(work / "bodies-1.jsonl", ctx["held_out"])
    load = paced.Load(topo.url, ctx["bodies"], s.rate, s.workers, work / f"load-{name}.log", MODEL)
    try:
        # The warm-up counts from the load's first answered request.
        wait_until("the load's first requests", lambda: sum(successes(topo, r) for r in range(
            1, len(topo.replicas) + 1)) > answered, timeout=60, interval=0.2)
        time.sleep(s.warmup)
        action(topo, ctx, out)
        time.sleep(s.settle)
    except Exception as err:  # the fault went wrong: the scenario fails, the run goes on
        out.check(f"scenario ran: {type(err).__name__}: {err}", False)
    finally:
        result = load.stop()
        if "cleanup" in ctx:
            ctx.pop("cleanup")()
    out.load = result
    out.requests, out.failures = result["requests"], out.failures + paced.failures(result)
    out.status_5xx += paced.status_5xx(result)
    out.versions_served = result["versions"]
    out.errors.update(paced.error_lines(result))
    out.check("the load sent requests throughout", out.requests > 0)
    out.check(f"answers came from version(s) {', '.join(sorted(ctx['expect_versions']))}",
              set(out.versions_served) == ctx["expect_versions"])
    out.passed = out.failures == 0 and out.status_5xx == 0 and all(held for _, held in out.checks)
    print(f"[chaos] {name}: {out.requests} requests ({result['achieved_rps']:,.0f}/s), {out.failures} failed, "
          f"{out.status_5xx} 5xx, {result['resent']} resent, "
          f"versions {out.versions_served} -> {'passed' if out.passed else 'FAILED'}", flush=True)
    return out


def go_fuzz(fuzz_time: str, testdata_models: Path) -> list[dict]:
    """The Go fuzz targets on request decoding, each for fuzz_time."""
    results = []
    for target, package in (("FuzzDecodeRequest", "./tfserving"), ("FuzzDecodeInferRequest", "./oip"),
                            ("FuzzModelInfer", "./grpc")):
        # Minimizing each new interesting input may take 60 s by default, and
        # its executions are not counted: bound it so the time goes to fuzzing.
        done = subprocess.run(["go", "test", package, "-run", "^$", "-fuzz", f"^{target}$", "-fuzztime", fuzz_time,
                               "-fuzzminimizetime", "5s"],
                              cwd=ROOT / "serve-go", capture_output=True, text=True, timeout=900,
                              env={**os.environ, "SKL2GO_TEST_MODELS": str(testdata_models)})
        lines = [line for line in done.stdout.splitlines() if "execs:" in line]
        execs = int(lines[-1].split("execs:")[1].split()[0]) if lines else 0
        results.append({"target": target, "fuzztime": fuzz_time, "execs": execs, "passed": done.returncode == 0,
                        "output": "" if done.returncode == 0 else (done.stdout + done.stderr)[-3000:]})
        print(f"[chaos] go fuzz {target} for {fuzz_time}: {execs:,} executions, "
              f"{'passed' if done.returncode == 0 else 'FAILED'}", flush=True)
    return results


def run(s: Settings, build: Path, source_models: Path, state: Path, out_dir: Path, testdata_models: Path) -> bool:
    """Run every scenario; write out_dir/chaos.{json,md}; True if all passed."""
    started = time.monotonic()
    fuzz = go_fuzz(s.go_fuzz_time, testdata_models) if s.go_fuzz_time else []
    shutil.rmtree(state, ignore_errors=True)
    models, work = state / "models", state / "work"
    work.mkdir(parents=True)
    shutil.copytree(source_models / MODEL, models / MODEL)
    ctx = {"settings": s, "build": build, "models": models, "held_out": build / MODEL, "work": work,
           "version": repository.versions(models / MODEL)[-1]}
    with topology.running(models, state / "run", replicas=2, SKL2GO_POLL_INTERVAL="1s",
                          CLIENT_TIMEOUT=f"{s.client_timeout}s", SKL2GO_SHADOW_QUEUE="1") as topo:
        measured = paced.capacity(topo.url, paced.bodies(work / "bodies-1.jsonl", ctx["held_out"]),
                                  s.capacity_seconds, MODEL)
        s = dataclasses.replace(s, rate=s.rate or round(s.load_fraction * measured["rps"]))
        ctx["settings"] = s
        print(f"[chaos] capacity: {measured['rps']:,.0f} single-record predicts/s through nginx (wrk, "
              f"{s.capacity_seconds} s); load {s.rate:,.0f} requests/s", flush=True)
        outcomes = [run_scenario(name, action, topo, ctx, s, work) for name, action in SCENARIOS
                    if not s.only or name in s.only.split(",")]
    if s.registry:
        from verify.chaos import registry

        outcomes += registry.run(s, build, state / "registry", work)
    write_reports(out_dir, outcomes, fuzz, s, measured, time.monotonic() - started)
    return all(o.passed for o in outcomes) and all(f["passed"] for f in fuzz)


def write_reports(out_dir: Path, outcomes: list[Outcome], fuzz: list[dict], s: Settings, measured: dict,
                  elapsed: float) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    load = {"capacity": measured, "load_fraction": s.rate / measured["rps"] if measured["rps"] else None,
            "rate": s.rate, "workers": s.workers}
    (out_dir / "chaos.json").write_text(json.dumps({"load": load, "scenarios": [o.as_json() for o in outcomes]},
                                                   indent=2) + "\n")
    fraction = f"{load['load_fraction']:.2f}" if load["load_fraction"] else "?"
    lines = ["# Chaos run", "",
             f"Capacity: {measured['rps']:,.0f} single-record predicts/s through nginx to 2 replicas "
             f"(wrk, {measured['wrk_threads']} threads, {measured['wrk_connections']} connections, "
             f"{measured['seconds']} s, p99 {measured['p99_ms']:.1f} ms, measured at the start of the run). "
             f"Steady load: {s.rate:,.0f} requests/s ({fraction} of it) of one held-out trip each from "
             f"skl2go-load (paced, every answer checked: status, model, one finite prediction, version), "
             f"at most {s.workers} in flight, through nginx "
             f"(the registry scenarios: 2 replicas serving {MODEL}@champion from a real MLflow server); "
             f"{s.warmup:g} s of load before each fault and {s.settle:g} s after it. Run took {elapsed:.0f} s.", "",
             "A POST is resent by the load generator only when a kept-alive connection nginx closed under it "
             "lost it before any answer (resent); nginx sends a request that could not reach a replica to the "
             "next one, as a prediction is pure (docs/operations.md).", "",
             "| scenario | requests | req/s | p99 ms | failures | 5xx | resent | versions served | passed |",
             "|---|--:|--:|--:|--:|--:|--:|---|---|"]
    for o in outcomes:
        versions = ", ".join(f"v{v}: {n}" for v, n in o.versions_served.items())
        p99 = o.load.get("latency_us", {}).get("p99", 0) / 1000
        lines.append(f"| {o.scenario} | {o.requests} | {o.load.get('achieved_rps', 0):,.0f} | {p99:.1f} | "
                     f"{o.failures} | {o.status_5xx} | {o.load.get('resent', 0)} | {versions} | "
                     f"{'yes' if o.passed else '**no**'} |")
    lines.append("")
    for o in outcomes:
        lines += [f"## {o.scenario}", "", o.did, ""]
        lines += [f"- [{'x' if held else ' '}] {description}" for description, held in o.checks]
        if o.errors:
            lines += ["", "Failures seen:", ""] + [f"- {message} (×{n})" for message, n in o.errors.items()]
        lines.append("")
    if fuzz:
        lines += ["## Go fuzzing of request decoding", "", "| target | time | executions | passed |", "|---|---|---|---|"]
        lines += [f"| {f['target']} | {f['fuzztime']} | {f['execs']:,} | {'yes' if f['passed'] else '**no**'} |"
                  for f in fuzz]
        for f in fuzz:
            if not f["passed"]:
                lines += ["", f"{f['target']} failed:", "", "```", f["output"], "```"]
        lines.append("")
    lines += ["Reproduce: `make chaos` (full) or `.venv/bin/python -m verify.chaos --short`.", ""]
    (out_dir / "chaos.md").write_text("\n".join(lines))
