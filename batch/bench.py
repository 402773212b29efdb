"""make bench-batch: rows/s and peak memory of batch scoring, three ways, on one file.

    python -m batch.bench --data build/bench/yellow_tripdata_synthetic_3000000.parquet --name trip_duration

1. the local engine (python -m batch score),
2. the Spark engine, local[*],
3. sklearn: the file read with pandas, the same features, pipeline.predict
   (on all rows at once, or --sklearn-chunk rows at a time: a tree family's
   dense one-hot matrix of millions of rows does not fit in memory).

Each runs in a child process of its own, --rounds times in alternating
order (A B, B A, …: the median of the per-round ratios is reported), and
reports where its time went stage by stage (batch/stages.py; sklearn's
way: imports, read, features, loading the pipeline, predict). Peak memory
is the largest sum of the resident sets of its process tree (Spark: the
JVM and its Python workers), sampled every 0.1 s.
Writes reports/bench-batch-<name>.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from .model import resolve

SKLEARN = """
import json, resource, sys, time
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
stages, begun = {"before the run": {"cpu": round(cpu(), 3)}}, time.perf_counter()
def stage(name, since, cpu_since):
    stages[name] = {"wall": round(time.perf_counter() - since, 3), "cpu": round(cpu() - cpu_since, 3)}
    return time.perf_counter(), cpu()
w, c = begun, cpu()
import joblib, numpy as np, pandas as pd, pyarrow.parquet as pq
from train import features
from train.data import CLOCKS
w, c = stage("imports", w, c)
path, pipeline_file = sys.argv[1], sys.argv[2]
kind = next(k for k, (pick, _) in CLOCKS.items() if pick in pq.read_schema(path).names)
pick = CLOCKS[kind][0]
trips = pd.read_parquet(path, columns=[pick, "PULocationID", "DOLocationID", "trip_distance"])
w, c = stage("read", w, c)
X = pd.DataFrame(features.inputs(trips[pick].to_numpy(), trips["PULocationID"].to_numpy(),
                                 trips["DOLocationID"].to_numpy(), trips["trip_distance"].to_numpy()))
w, c = stage("features", w, c)
pipeline, chunk = joblib.load(pipeline_file), int(sys.argv[3]) or len(X)
w, c = stage("load the pipeline", w, c)
predictions = np.concatenate([pipeline.predict(X.iloc[i:i + chunk]) for i in range(0, len(X), chunk)])
w, c = stage("predict", w, c)
stages["run"] = {"wall": round(w - begun, 3), "cpu": round(cpu() - stages["before the run"]["cpu"], 3)}
print("[stages]", json.dumps(stages))
print(len(predictions), time.perf_counter() - begun)
"""


def measure(command: list[str], interval: float = 0.1) -> dict:
    """Run command: its wall time, and the peak memory of its process tree
    (the sum of the resident sets of the command and every process it
    started, the Spark JVM and its Python workers included), sampled, and
    the CPU time of the processes that ended and were waited for: on a
    shared machine the wall time moves with the load, the CPU time much
    less."""
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        root, peak = psutil.Process(child.pid), 0
        while child.poll() is None:
            with contextlib.suppress(psutil.Error):
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(_rss(p) for p in tree))
            time.sleep(interval)
        seconds = time.perf_counter() - started
        log.seek(0)
        text = log.read()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{text[-4000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(peak / 2**20, 1)}
    stages = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("[stages] ")]
    if stages:
        result["stages"] = json.loads(stages[-1])
        # The rest of the wall time: the interpreter's start, imports (the
        # local engine's; sklearn's script times its own), finding the
        # model, and the exit.
        result["stages"]["outside the run"] = {"wall": round(seconds - result["stages"]["run"]["wall"], 3)}
    return result


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:  # ended between the listing and the reading
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--name", default="trip_duration")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--engines", nargs="+", default=["local", "spark", "sklearn"],
                        choices=["local", "spark", "sklearn"], help="what to measure, in this order")
    parser.add_argument("--sklearn-chunk", type=int, default=0,
                        help="rows per sklearn predict call (0: all rows in one call)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of all engines, in alternating order (A B, B A, …)")
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq

    published = resolve(args.models, args.name)
    rows = pq.read_metadata(args.data).num_rows
    runs: dict[str, list[dict]] = {engine: [] for engine in args.engines}
    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
        for round_ in range(args.rounds):
            # Alternating order (A B, B A, …): on a shared machine the load
            # moves between rounds, so each round's ratio is what counts.
            for engine in args.engines if round_ % 2 == 0 else args.engines[::-1]:
                print(f"[bench] round {round_ + 1}/{args.rounds}: {engine} on {rows:,} trips …", flush=True)
                if engine == "sklearn":
                    command = [sys.executable, "-c", SKLEARN, str(args.data),
                               str(published.path / "pipeline.joblib"), str(args.sklearn_chunk)]
                else:
                    command = [sys.executable, "-m", "batch", "score", "--data", str(args.data), "--out",
                               str(Path(tmp) / f"{engine}.parquet"), "--overwrite", "--models", str(args.models),
                               "--name", args.name, "--engine", engine]
                result = measure(command)
                result["rows_per_second"] = round(rows / result["seconds"])
                result["load_average"] = [round(x, 2) for x in os.getloadavg()]  # 1, 5, 15 min, at its end
                runs[engine].append(result)
                print(f"[bench] {engine}: {result['seconds']:.1f}s ({result['cpu_seconds']:.1f} CPU s), "
                      f"{result['rows_per_second']:,} rows/s, "
                      f"peak {result['peak_rss_mb']:,.0f} MB", flush=True)
    results = {engine: {**median_run(r), "runs": r} for engine, r in runs.items()}
    for engine, result in results.items():
        if "sklearn" in runs and engine != "sklearn":
            # The median of the per-round ratios, wall and CPU.
            result["vs_sklearn"] = round(statistics.median(
                s["seconds"] / r["seconds"] for r, s in zip(runs[engine], runs["sklearn"])), 2)
            result["vs_sklearn_cpu"] = round(statistics.median(
                s["cpu_seconds"] / r["cpu_seconds"] for r, s in zip(runs[engine], runs["sklearn"])
                if r["cpu_seconds"]), 2)
    report = {"rows": rows, "file": str(args.data), "file_mb": round(args.data.stat().st_size / 1e6, 1),
              "model": {"name": published.name, "version": published.version,
                        "family": published.metadata["family"]},
              "cores": os.cpu_count(), "load_average_at_end": os.getloadavg(), "sklearn_chunk": args.sklearn_chunk,
              "rounds": args.rounds, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bench-batch-{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = markdown(report)
    (args.out / f"bench-batch-{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def markdown(report: dict) -> list[str]:
    """The report as markdown: one row per engine (its median run), then
    where each engine's time went, stage by stage."""
    results = report["results"]
    model = report["model"]
    lines = [f"# Batch scoring, {report['rows']:,} trips ({model['name']} v{model['version']}, {model['family']})",
             "", f"{report['rounds']} round(s), engines in alternating order; each engine's median run, and the "
             "median of the per-round ratios to sklearn.", "",
             "| engine | seconds | rows/s | vs sklearn | CPU seconds | vs sklearn (CPU) | peak memory (MB) "
             "| load average (1 min) at its end |", "|---|---|---|---|---|---|---|---|"]
    for engine, r in results.items():
        ratio = f"{r['vs_sklearn']:.1f}x" if "vs_sklearn" in r else "—"
        cpu_ratio = f"{r['vs_sklearn_cpu']:.1f}x" if "vs_sklearn_cpu" in r else "—"
        lines.append(f"| {engine} | {r['seconds']:.1f} | {r['rows_per_second']:,} | {ratio} | {r['cpu_seconds']:.1f} | "
                     f"{cpu_ratio} | {r['peak_rss_mb']:,.0f} | {r['load_average'][0]:.1f} |")
    for engine, r in results.items():
        if "stages" not in r:
            continue
        lines += ["", f"{engine}, stage by stage (its median run; threads overlap, so the stages' wall "
                      "seconds may add up to more than the run's):", "",
                  "| stage | wall seconds | CPU seconds |", "|---|---|---|"]
        for stage, t in r["stages"].items():
            wall = f"{t['wall']:.2f}" if "wall" in t else "—"
            cpu = f"{t['cpu']:.2f}" if "cpu" in t else "—"
            lines.append(f"| {stage} | {wall} | {cpu} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
