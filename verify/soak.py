"""python -m verify.soak [--minutes 30] [--rate N | --fraction 0.5] [--out reports]:
the stack under a steady load for a long time (make soak).

It starts a topology of its own (2 replicas behind nginx on free loopback
ports, serving the test models), measures its capacity (single-record
predicts through nginx under wrk, as `make chaos` does: loadtest/paced.py),
then sends skl2go-load at --fraction of it (or --rate requests/s) for
--minutes, every answer checked, and samples the resident memory (VmRSS) of
each replica and of nginx's master and workers every --interval seconds.

It writes OUT/soak.json and OUT/soak.md and exits 1 if a request failed, a
process exited, or a process's memory was not steady: after the warm-up
(the first --warmup of the run), its RSS at the end (the median of the last
few samples) may exceed its RSS at the start (the median of the first few
after the warm-up) by at most the larger of --growth-mib and --growth-pct
percent of the start. The slope over the run after the warm-up (least
squares, MiB per minute) is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import topology
from loadtest import paced
from topology import ROOT, processes

MODEL = "trip_duration"
MIB = 1 << 20
EDGE = 5  # samples whose median is the start (after the warm-up) and the end


def sample(pids: dict[str, int]) -> dict[str, int | None]:
    return {name: processes.rss_bytes(pid) for name, pid in pids.items()}


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (0 for fewer than 2)."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def verdict(samples: list[dict], warmup_s: float, growth_mib: float, growth_pct: float) -> dict:
    """Each process's RSS figures (MiB) and whether it stayed steady after the warm-up."""
    out = {}
    names = list(samples[0]["rss"]) if samples else []
    for name in names:
        series = [(s["t"], s["rss"][name] / MIB) for s in samples if s["rss"].get(name) is not None]
        after = [p for p in series if p[0] >= warmup_s] or series
        start = statistics.median(y for _, y in after[:EDGE])
        end = statistics.median(y for _, y in after[-EDGE:])
        bound = max(growth_mib, start * growth_pct / 100)
        out[name] = {"first_mib": series[0][1], "start_mib": start, "end_mib": end,
                     "max_mib": max(y for _, y in series), "growth_mib": end - start, "bound_mib": bound,
                     "slope_mib_per_min": 60 * slope(after), "samples": len(series),
                     "exited": len(series) < len(samples), "steady": end - start <= bound}
    return out


def soak(args: argparse.Namespace) -> dict:
    state = args.state.resolve()
    shutil.rmtree(state, ignore_errors=True)
    models, work = state / "models", state / "work"
    work.mkdir(parents=True)
    shutil.copytree(args.models / MODEL, models / MODEL)
    bodies = paced.bodies(work / "bodies-1.jsonl", args.build / MODEL)
    seconds = args.minutes * 60
    with topology.running(models, state / "run", replicas=args.replicas) as topo:
        measured = paced.capacity(topo.url, bodies, args.capacity_seconds, MODEL)
        rate = args.rate or round(args.fraction * measured["rps"])
        print(f"[soak] capacity: {measured['rps']:,.0f} single-record predicts/s through nginx (wrk, "
              f"{args.capacity_seconds} s); load {rate:,.0f} requests/s for {args.minutes:g} min", flush=True)
        master, replicas = topo.nginx_pid(), topo.pids()
        pids = {f"replica-{n}": pid for n, pid in enumerate(replicas, 1)}
        pids |= {"nginx-master": master} | {f"nginx-worker-{n}": pid
                                            for n, pid in enumerate(sorted(processes.children(master)), 1)}
        load = paced.Load(topo.url, bodies, rate, args.workers, work / "load.log", MODEL, duration=f"{seconds:g}s")
        samples, started = [], time.monotonic()
        try:
            while load.process.poll() is None and time.monotonic() - started < seconds + 60:
                samples.append({"t": round(time.monotonic() - started, 1), "rss": sample(pids)})
                if len(samples) % max(1, round(60 / args.interval)) == 0:
                    print(f"[soak] {samples[-1]['t']:.0f} s: RSS MiB "
                          + ", ".join(f"{n} {(v or 0) / MIB:.0f}" for n, v in samples[-1]["rss"].items()), flush=True)
                time.sleep(args.interval)
        finally:
            result = load.stop(timeout=60)
        samples.append({"t": round(time.monotonic() - started, 1), "rss": sample(pids)})
        restarted = topo.pids() != replicas or topo.nginx_pid() != master
    warmup_s = args.warmup * seconds
    figures = verdict(samples, warmup_s, args.growth_mib, args.growth_pct)
    failed = paced.failures(result)
    passed = (failed == 0 and result["requests"] > 0 and not restarted
              and all(f["steady"] and not f["exited"] for f in figures.values()))
    return {"minutes": args.minutes, "capacity": measured, "rate": rate,
            "fraction": rate / measured["rps"] if measured["rps"] else None, "interval_s": args.interval,
            "warmup_s": warmup_s, "bound": {"growth_mib": args.growth_mib, "growth_pct": args.growth_pct},
            "requests": result["requests"], "errors": failed, "restarted": restarted, "passed": passed,
            # Whether the load held its rate (a machine too busy to send it makes the soak a lighter one).
            "held_rate": result["achieved_rps"] >= 0.95 * rate,
            "load": result, "processes": figures, "samples": samples}


def write_reports(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    load, cap = report["load"], report["capacity"]
    lat = load["latency_us"]
    lines = ["# Soak", "",
             f"{report['minutes']:g} minutes at {report['rate']:,.0f} requests/s "
             f"({report['fraction']:.2f} of the {cap['rps']:,.0f} single-record predicts/s measured through nginx "
             f"with wrk at the start), from skl2go-load (paced, every answer checked), through nginx to 2 replicas. "
             f"RSS sampled every {report['interval_s']:g} s; the first {report['warmup_s']:.0f} s are the warm-up.", "",
             f"- requests: {report['requests']:,} ({load['achieved_rps']:,.0f}/s: rate "
             f"{'held' if report['held_rate'] else '**not held**'}), errors: {report['errors']} "
             f"{json.dumps(load['errors']) if load['errors'] else ''}",
             f"- versions answered: {json.dumps(load['versions'])}; resent: {load['resent']}; "
             f"sent late (workers all busy): {load['late']:,}",
             f"- latency ms: p50 {lat['p50'] / 1000:.1f}, p95 {lat['p95'] / 1000:.1f}, p99 {lat['p99'] / 1000:.1f}, "
             f"max {lat['max'] / 1000:.1f}",
             f"- processes restarted: {'**yes**' if report['restarted'] else 'no'}", "",
             f"Steady: the end (median of the last {EDGE} samples) at most max({report['bound']['growth_mib']:g} MiB, "
             f"{report['bound']['growth_pct']:g}% of the start) above the start (median of the first {EDGE} after "
             "the warm-up).", "",
             "| process | first MiB | start MiB | end MiB | max MiB | growth MiB | bound MiB | MiB/min | steady |",
             "|---|--:|--:|--:|--:|--:|--:|--:|---|"]
    for name, f in report["processes"].items():
        lines.append(f"| {name} | {f['first_mib']:.1f} | {f['start_mib']:.1f} | {f['end_mib']:.1f} | {f['max_mib']:.1f} "
                     f"| {f['growth_mib']:+.1f} | {f['bound_mib']:.1f} | {f['slope_mib_per_min']:+.2f} | "
                     f"{'yes' if f['steady'] and not f['exited'] else '**no**'} |")
    lines += ["", f"Passed: {'yes' if report['passed'] else '**no**'}.", "",
              "Reproduce: `make soak [MINUTES=30] [RATE=requests/s]`.", ""]
    (out / "soak.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs (at most 240)")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s (default: --fraction of the capacity)")
    parser.add_argument("--fraction", type=float, default=0.5, help="of the capacity measured at the start")
    parser.add_argument("--capacity-seconds", type=int, default=5, help="the wrk run that measures the capacity")
    parser.add_argument("--workers", type=int, default=256, help="requests in flight at most")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the run that is warm-up")
    parser.add_argument("--growth-mib", type=float, default=16.0, help="RSS growth allowed after the warm-up, MiB")
    parser.add_argument("--growth-pct", type=float, default=10.0, help="… or percent of the start, if larger")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "reports", help="where soak.json and soak.md go")
    parser.add_argument("--build", type=Path, default=ROOT / "build/testdata/build", help="held-out trips (python -m train fit output)")
    parser.add_argument("--models", type=Path, default=ROOT / "build/testdata/models", help="model repository to serve")
    parser.add_argument("--state", type=Path, default=ROOT / "build/soak", help="the run's topology state and logs")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 240:
        parser.error(f"--minutes must be in (0, 240], got {args.minutes:g}")
    if args.rate < 0 or not 0 < args.fraction <= 1 or args.interval <= 0 or not 0 <= args.warmup < 1:
        parser.error("--rate must not be negative, --fraction be in (0, 1], --interval positive, --warmup in [0, 1)")
    for needed in (args.build / MODEL / "training.json", args.models / MODEL):
        if not needed.exists():
            print(f"soak: {needed} not found: run `make testdata` (or point --build/--models elsewhere)", file=sys.stderr)
            return 2
    args.build, args.models = args.build.resolve(), args.models.resolve()
    report = soak(args)
    write_reports(args.out, report)
    print(f"[soak] wrote {args.out}/soak.json and soak.md: {report['requests']:,} requests, {report['errors']} errors, "
          f"memory {'steady' if all(f['steady'] for f in report['processes'].values()) else 'GREW'} -> "
          f"{'passed' if report['passed'] else 'FAILED'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
