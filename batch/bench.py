"""make bench-batch: rows/s and peak memory of batch scoring, three ways, on one file.

    python -m batch.bench --data build/bench/yellow_tripdata_synthetic_3000000.parquet --name trip_duration

1. the local engine (python -m batch score),
2. the Spark engine, local[*],
3. sklearn: the file read with pandas, the same features, pipeline.predict.

Each runs in a child process of its own; peak memory is the largest
resident set of that process tree's biggest process (the JVM for Spark, not
the sum with its Python workers), as the kernel reports it (ru_maxrss).
Writes reports/bench-batch.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .model import resolve

SKLEARN = """
import sys, time, joblib, numpy as np, pandas as pd
from train import features
from train.data import CLOCKS
path, pipeline_file = sys.argv[1], sys.argv[2]
started = time.perf_counter()
import pyarrow.parquet as pq
kind = next(k for k, (pick, _) in CLOCKS.items() if pick in pq.read_schema(path).names)
pick = CLOCKS[kind][0]
trips = pd.read_parquet(path, columns=[pick, "PULocationID", "DOLocationID", "trip_distance"])
X = pd.DataFrame(features.inputs(trips[pick].to_numpy(), trips["PULocationID"].to_numpy(),
                                 trips["DOLocationID"].to_numpy(), trips["trip_distance"].to_numpy()))
predictions = joblib.load(pipeline_file).predict(X)
print(len(predictions), time.perf_counter() - started)
"""


# Runs a command and prints the peak RSS (KB) of its biggest process last: a
# fresh process per measurement, so that no earlier child's peak counts.
PEAK = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def measure(command: list[str]) -> dict:
    """Run command in a child process: its wall time and the peak RSS of its biggest process."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_kb / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--name", default="trip_duration")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--engines", nargs="+", default=["local", "spark", "sklearn"],
                        choices=["local", "spark", "sklearn"], help="what to measure, in this order")
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq

    published = resolve(args.models, args.name)
    rows = pq.read_metadata(args.data).num_rows
    results = {}
    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
        for engine in args.engines:
            print(f"[bench] {engine} on {rows:,} trips …", flush=True)
            if engine == "sklearn":
                command = [sys.executable, "-c", SKLEARN, str(args.data), str(published.path / "pipeline.joblib")]
            else:
                command = [sys.executable, "-m", "batch", "score", "--data", str(args.data), "--out",
                           str(Path(tmp) / f"{engine}.parquet"), "--models", str(args.models), "--name", args.name,
                           "--engine", engine]
            result = measure(command)
            result["rows_per_second"] = round(rows / result["seconds"])
            results[engine] = result
            print(f"[bench] {engine}: {result['seconds']:.1f}s, {result['rows_per_second']:,} rows/s, "
                  f"peak {result['peak_rss_mb']:,.0f} MB", flush=True)
    report = {"rows": rows, "file": str(args.data), "file_mb": round(args.data.stat().st_size / 1e6, 1),
              "model": {"name": published.name, "version": published.version,
                        "family": published.metadata["family"]},
              "cores": os.cpu_count(), "load_average_at_end": os.getloadavg(), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-batch.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Batch scoring, {rows:,} trips ({published.name} v{published.version}, "
             f"{published.metadata['family']})", "",
             "| engine | seconds | rows/s | vs sklearn | peak memory (MB) |", "|---|---|---|---|---|"]
    base = results.get("sklearn", {}).get("rows_per_second")
    for engine, r in results.items():
        ratio = f"{r['rows_per_second'] / base:.1f}x" if base else "—"
        lines.append(f"| {engine} | {r['seconds']:.1f} | {r['rows_per_second']:,} | {ratio} | "
                     f"{r['peak_rss_mb']:,.0f} |")
    (args.out / "bench-batch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
