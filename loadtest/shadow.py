"""`make bench-shadow`: does a slow mirror (an experiment's shadow variant)
change the answers or the latency of the requests it copies?

    python -m loadtest.shadow --control DIR --mirror DIR (--bodies FILE | --held-out DIR)
                              [--rate 200] [--round 15] [--cycles 2] [--out reports]

--control and --mirror are published versions (models/<name>/<version>/, e.g.
what `make parity` leaves in build/parity/models/linear/1 and
build/parity/models/random_forest/1) taking the same inputs; they are copied
into a model repository of their own (the mirror as version 1, the control as
version 2, the latest), so the sources are left alone. A stack of nginx and 2
replicas starts on free loopback ports (topology, the owner of running
processes) with an experiment on the model that sends every request to the
control. A round is a steady, open-loop stream of predicts through nginx
(serve-go/bin/skl2go-load at --rate requests per second for --round
seconds; every answer must be a 200 from version 2) with the experiment's
mirror on or off: experiment.json is rewritten (and the replicas told by
SIGHUP), and the round starts once every replica answers with the new
experiment id.

The rounds come in pairs, in the order (off, on), (on, off), (off, off),
repeated --cycles times: on minus off is the mirror's effect, and off minus
off, measured the same way in the same minutes, is the noise it is judged
against. It writes reports/bench-shadow.json (every round: latency
percentiles, load average, mirror runs and drops from the replicas'
/metrics) and prints the medians; it exits 1 if an answer was wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import topology
from loadtest import samples
from topology import ROOT, exchange, wait_until
from train import repository

LOAD = ROOT / "serve-go" / "bin" / "skl2go-load"
NAME = "trip_duration"
MIRROR_VERSION, CONTROL_VERSION = 1, 2
PAIRS = [("off", "on"), ("on", "off"), ("off", "off")]
PERCENTILES = ("p50", "p95", "p99")


def experiment(mirror: bool) -> dict:
    """Every request to the control; with mirror, the slow version runs on a copy."""
    e = {"id": "shadow-on" if mirror else "shadow-off",
         "variants": [{"name": "control", "version": CONTROL_VERSION, "weight": 1}]}
    if mirror:
        e["mirror"] = {"name": "slow", "version": MIRROR_VERSION}
    return e


def make_repository(control: Path, mirror: Path, models: Path) -> Path:
    """models/<NAME>/1 = the mirror, /2 = the control, published as export does."""
    shutil.rmtree(models, ignore_errors=True)
    for source in (mirror, control):
        metadata = repository.load_metadata(source)
        metadata.pop("version", None)
        metadata["name"] = NAME
        files = {p.name: p for p in source.iterdir() if p.is_file() and p.name != repository.METADATA_FILE}
        repository.publish(models / NAME, files, metadata)
    return models


def switch(stack: topology.Topology, models: Path, mirror: bool) -> None:
    """Write the experiment, tell the replicas, and wait until each answers with it."""
    want = experiment(mirror)
    path = models / NAME / "experiment.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(want))
    os.replace(tmp, path)
    stack.reload()
    body = json.dumps({"instances": [example(models)]}).encode()

    def applied() -> bool:
        for replica in stack.replicas:
            try:
                status, _, headers = exchange("POST", f"{replica}/v1/models/{NAME}:predict", body,
                                              {"Content-Type": "application/json"}, timeout=10)
            except OSError:
                return False
            if status != 200 or headers.get("X-Skl2go-Experiment") != want["id"]:
                return False
        return True

    wait_until(f"experiment {want['id']} on every replica", applied, timeout=30, interval=0.2)


def example(models: Path) -> dict:
    """One instance made of the control's input examples (model.json)."""
    inputs = repository.load_metadata(models / NAME / str(CONTROL_VERSION))["inputs"]
    return {i["name"]: i["example"] for i in inputs}


def mirror_counts(stack: topology.Topology) -> dict:
    """The replicas' mirror runs (ok, error) and drops, summed."""
    return {
        "runs_ok": sum(stack.metric(i, "skl2go_shadow_runs_total", 'outcome="ok"') for i in (1, 2)),
        "runs_error": sum(stack.metric(i, "skl2go_shadow_runs_total", 'outcome="error"')
                          + stack.metric(i, "skl2go_shadow_runs_total", 'outcome="incompatible"') for i in (1, 2)),
        "dropped": sum(stack.metric(i, "skl2go_shadow_dropped_total") for i in (1, 2)),
    }


def load_round(stack: topology.Topology, bodies: Path, rate: float, seconds: float) -> dict:
    """One open-loop run of skl2go-load through nginx; its JSON summary."""
    done = subprocess.run([str(LOAD), "-addr", stack.url, "-model", NAME, "-bodies", str(bodies),
                           "-rate", str(rate), "-duration", f"{seconds}s", "-workers", "64",
                           "-versions", str(CONTROL_VERSION)],
                          cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
    line = next((line for line in done.stdout.splitlines() if line.startswith('{"load":')), None)
    if line is None:
        raise RuntimeError(f"skl2go-load failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return {**json.loads(line)["load"], "exit": done.returncode}


def run_round(stack: topology.Topology, models: Path, bodies: Path, mirror: bool, rate: float, seconds: float,
              log) -> dict:
    switch(stack, models, mirror)
    before = mirror_counts(stack)
    load = load_round(stack, bodies, rate, seconds)
    time.sleep(1)  # the last mirror runs finish
    after = mirror_counts(stack)
    lat = load["latency_us"]
    wrong = load["requests"] - load["versions"].get(str(CONTROL_VERSION), 0)
    out = {"mirror": "on" if mirror else "off", "loadavg": os.getloadavg()[0], "requests": load["requests"],
           "wrong": wrong, "errors": load["errors"], "exit": load["exit"],
           **{f"{p}_ms": lat[p] / 1000 for p in PERCENTILES}, "max_ms": lat["max"] / 1000,
           **{k: after[k] - before[k] for k in after}}
    log(f"  mirror {out['mirror']:<3}  p50 {out['p50_ms']:.2f}  p95 {out['p95_ms']:.2f}  p99 {out['p99_ms']:.2f} ms  "
        f"wrong {wrong}  mirror runs {out['runs_ok']:.0f}  dropped {out['dropped']:.0f}  load {out['loadavg']:.2f}")
    return out


def summarize(pairs: list[tuple[dict, dict]]) -> dict:
    """Median on−off and off−off differences per percentile, and the off−off spread."""
    def diffs(kind: str, p: str) -> list[float]:
        out = []
        for a, b in pairs:
            kinds = (a["mirror"], b["mirror"])
            if kind == "effect" and sorted(kinds) == ["off", "on"]:
                on, off = (a, b) if a["mirror"] == "on" else (b, a)
                out.append(on[f"{p}_ms"] - off[f"{p}_ms"])
            elif kind == "noise" and kinds == ("off", "off"):
                out.append(b[f"{p}_ms"] - a[f"{p}_ms"])
        return out

    summary = {}
    for p in PERCENTILES:
        effect, noise = diffs("effect", p), diffs("noise", p)
        summary[p] = {"on_minus_off_ms": effect, "off_minus_off_ms": noise,
                      "median_effect_ms": statistics.median(effect) if effect else None,
                      "noise_ms": max((abs(d) for d in noise), default=None)}
    return summary


def measure(control: Path, mirror: Path, bodies: Path, work: Path, rate: float = 200.0, seconds: float = 15.0,
            cycles: int = 2, log=print, **settings: str) -> dict:
    """The rounds (PAIRS × cycles) on a stack of their own in work/: the
    report bench-shadow.json holds (and bench.json's "shadow")."""
    models = make_repository(control, mirror, work / "models")
    (models / NAME / "experiment.json").write_text(json.dumps(experiment(False)))
    rounds: list[tuple[dict, dict]] = []
    with topology.running(models, work / "run", replicas=2, **settings) as stack:
        log(f"[shadow] {rate:g} req/s, {seconds:g} s rounds, {cycles} × {PAIRS}, through {stack.url}")
        switch(stack, models, False)
        load_round(stack, bodies, rate, 3)  # warm up, not counted
        for _ in range(cycles):
            for a, b in PAIRS:
                rounds.append((run_round(stack, models, bodies, a == "on", rate, seconds, log),
                               run_round(stack, models, bodies, b == "on", rate, seconds, log)))
    summary = summarize(rounds)
    flat = [r for pair in rounds for r in pair]
    report = {"rate": rate, "round_seconds": seconds, "control": str(control), "mirror": str(mirror),
              "pairs": [list(p) for p in rounds], "summary": summary,
              "mirror_runs": sum(r["runs_ok"] for r in flat), "mirror_dropped": sum(r["dropped"] for r in flat),
              "mirror_errors": sum(r["runs_error"] for r in flat),
              "wrong_answers": sum(r["wrong"] + (r["exit"] != 0) for r in flat)}
    for p in PERCENTILES:
        s = summary[p]
        log(f"[shadow] {p}: on−off median {s['median_effect_ms']:+.2f} ms "
            f"(each {', '.join(f'{d:+.2f}' for d in s['on_minus_off_ms'])}); off−off noise ±{s['noise_ms']:.2f} ms "
            f"(each {', '.join(f'{d:+.2f}' for d in s['off_minus_off_ms'])})")
    log(f"[shadow] mirror runs {report['mirror_runs']:.0f}, dropped {report['mirror_dropped']:.0f}, errors "
        f"{report['mirror_errors']:.0f}; wrong answers {report['wrong_answers']}")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.shadow", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--control", type=Path, required=True, help="the control's version directory")
    ap.add_argument("--mirror", type=Path, required=True, help="the slow mirror's version directory")
    ap.add_argument("--bodies", type=Path, help="predict bodies, one per line")
    ap.add_argument("--held-out", type=Path, help="build/<name>/ to draw bodies of --rows rows from")
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second")
    ap.add_argument("--round", type=float, default=15.0, help="seconds per round")
    ap.add_argument("--cycles", type=int, default=2, help="times the pairs (off,on) (on,off) (off,off) run")
    ap.add_argument("--server", type=Path, help="the replicas' binary, named skl2go-server (topology stops processes by that name); default: make build's")
    ap.add_argument("--port", type=int, help="nginx's port; gRPC's port+1, the replicas' from port+10 (default: free ones)")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench-shadow")
    ap.add_argument("--out", type=Path, default=ROOT / "reports")
    args = ap.parse_args(argv)
    if not LOAD.is_file():
        ap.error(f"{LOAD} not found: make build")
    if (args.bodies is None) == (args.held_out is None):
        ap.error("give --bodies or --held-out")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    bodies = args.bodies
    if bodies is None:
        rows = samples.held_out_features(args.held_out)
        bodies = samples.write_bodies(work / f"bodies-{args.rows}.jsonl", samples.request_bodies(rows, args.rows, 500))
    settings = {}
    if args.server:
        settings["SERVER"] = str(args.server.resolve())
    if args.port:
        settings.update(PORT=str(args.port), BASE_PORT=str(args.port + 10), GRPC_PORT=str(args.port + 1),
                        GRPC_OFFSET="100")
    # SIGTERM (e.g. from a CI timeout) unwinds like Ctrl-C, so the stack is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    report = measure(args.control.resolve(), args.mirror.resolve(), bodies.resolve(), work, args.rate, args.round,
                     args.cycles, lambda m: print(m, flush=True), **settings)
    report.update(rows_per_request=args.rows, load_average_at_end=os.getloadavg()[0],
                  elapsed_s=round(time.monotonic() - started, 1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-shadow.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"[shadow] wrote {args.out / 'bench-shadow.json'} ({report['elapsed_s']:.0f} s)")
    return 1 if report["wrong_answers"] else 0


if __name__ == "__main__":
    sys.exit(main())
