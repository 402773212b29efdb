"""`make bench`'s code paths: CPU accounting from /proc, the report's ratios
and verdicts, and one very short real run (gunicorn, 2 Go replicas, nginx,
Locust, wrk) that must write bench.json in the issue's shape and leave no
process behind. Speed itself is never asserted here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import bench, report

ROOT = Path(__file__).resolve().parents[1]
RESULT_KEYS = {"target", "rows_per_request", "loadgen", "rps", "rows_per_s", "p50_ms", "p95_ms", "p99_ms",
               "failures", "cpu_ms_per_request"}
TARGETS = {"sklearn_gunicorn", "go_direct", "go_nginx", "nginx_static", "nginx_go_healthz"}

BURN = """
import os, sys, time
for _ in range(2):
    if os.fork() == 0:
        while time.process_time() < 0.3:   # 0.3 s of CPU, however long that takes
            pass
        os.write(1, b"done\\n")  # one write: the two children's lines must not interleave
        time.sleep(60)
        os._exit(0)
time.sleep(60)
"""


def test_cpu_seconds_sums_a_process_and_its_children():
    parent = subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
    try:
        assert [parent.stdout.readline() for _ in range(2)] == ["done\n", "done\n"]
        kids = bench.children(parent.pid)
        assert len(kids) == 2
        assert bench.cpu_seconds(kids) >= 0.58
        assert bench.cpu_seconds([parent.pid] + kids) >= bench.cpu_seconds(kids)
        assert bench.cpu_seconds([2**22 + 12345]) == 0  # a pid that does not exist counts nothing
    finally:
        parent.kill()
        for kid in bench.children(parent.pid):
            subprocess.run(["kill", str(kid)])
        parent.wait()


def fake_result(target: str, rows: int, loadgen: str, rps: float, p99: float, cpu: float | None) -> dict:
    return {"target": target, "rows_per_request": rows, "loadgen": loadgen, "rps": rps,
            "rows_per_s": rps * rows if not target.startswith("nginx_") else None, "p50_ms": p99 / 3,
            "p95_ms": p99 / 2, "p99_ms": p99, "failures": 0, "cpu_ms_per_request": cpu}


def fake_bench(go_rps: float, go_p99: float, go_cpu: float, go_rows_1000: float, healthz_rps: float) -> dict:
    results = [
        fake_result("sklearn_gunicorn", 1, "wrk", 400, 60, 6.0),
        fake_result("sklearn_gunicorn", 1, "locust", 300, 80, 6.0),
        fake_result("go_nginx", 1, "wrk", go_rps, go_p99, 0.2),
        fake_result("go_nginx", 1, "locust", 3000, 5, go_cpu),
        fake_result("nginx_go_healthz", 1, "wrk", healthz_rps, 2, 0.05),
        fake_result("sklearn_gunicorn", 1000, "wrk", 40, 300, 20.0),
        fake_result("go_nginx", 1000, "wrk", go_rows_1000 / 1000, 40, 4.0),
    ]
    batching = [{**r, "batching": "on"} for r in results if r["target"] == "go_nginx"] + \
               [{**r, "rps": r["rps"] / 2, "batching": "off"} for r in results if r["target"] == "go_nginx"]
    return {"machine": {"cpu": "test", "cores": 2}, "results": results, "batching": batching,
            "in_process": [{"what": "sklearn_predict_in_process", "rows_per_request": 1000, "ms_per_call": 5.0,
                            "rows_per_s": 200_000}],
            "settings": {"model": "m", "version": 1, "fixed_rate": {1: 100}, "default_batching": "on"}}


def test_report_judges_the_issue_targets_from_the_run():
    met = report.goals(fake_bench(go_rps=16_000, go_p99=20, go_cpu=0.2, go_rows_1000=250_000, healthz_rps=18_000))
    assert [g["met"] for g in met] == [True, True, True, True]
    assert met[0]["measured"].startswith("40.0× (16,000 vs 400 req/s)")
    assert met[1]["measured"].startswith("1/30 ")
    assert met[3]["measured"].startswith("89% ")

    missed = report.goals(fake_bench(go_rps=11_000, go_p99=90, go_cpu=0.5, go_rows_1000=150_000, healthz_rps=18_000))
    assert [g["met"] for g in missed] == [False, False, False, False]
    assert "27.5×" in missed[0]["measured"] and "p99 90.00 vs 60.00 ms" in missed[0]["measured"]
    assert missed[2]["measured"].startswith("0.75×")

    # alternating rounds, when the run has them, decide the /healthz share by their median
    rounds = fake_bench(go_rps=16_000, go_p99=20, go_cpu=0.2, go_rows_1000=250_000, healthz_rps=18_000)
    rounds["paired"] = [{"round": i + 1, "first": "go_nginx", "go_nginx_rps": p, "nginx_go_healthz_rps": 20_000,
                         "ratio": p / 20_000, "failures": 0} for i, p in enumerate([14_000, 17_000, 15_000])]
    share = report.goals(rounds)[3]
    assert share["met"] is False and share["measured"] == "75%, median of 3 alternating rounds (70–85%)"

    empty = report.goals({"results": []})
    assert [g["met"] for g in empty] == [None] * 4


def test_report_writes_tables_with_ratios_and_a_chart(tmp_path):
    bench_json = fake_bench(go_rps=16_000, go_p99=20, go_cpu=0.2, go_rows_1000=250_000, healthz_rps=18_000)
    report.write(bench_json, tmp_path)
    md = (tmp_path / "bench.md").read_text()
    assert "| go_nginx | wrk | 16,000 | 16,000 |" in md
    assert "| 40.0× | 1/30 |" in md  # req/s and CPU against the baseline of the same loadgen and size
    assert "| go_nginx | 1 | wrk | 16,000 | 8,000 | 0.50× |" in md  # batching on (the default), then off
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_short_real_bench_run_writes_every_report_and_cleans_up(repository, tmp_path):
    models = tmp_path / "models"  # a path of its own, to find the processes started from it
    shutil.copytree(repository.models / "trip_duration", models / "trip_duration")
    out = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--models", str(models), "--name", "trip_duration",
         "--held-out", str(repository.build / "trip_duration"), "--out", str(out), "--rows", "1", "--duration", "1",
         "--rounds", "2", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((out / "bench.json").read_text())
    assert {"cpu", "cores", "nginx", "wrk", "locust"} <= set(result["machine"])
    assert all(set(r) == RESULT_KEYS for r in result["results"])
    assert {r["target"] for r in result["results"]} == TARGETS
    assert {(r["target"], r["loadgen"]) for r in result["results"]} == {(t, g) for t in TARGETS for g in ("locust", "wrk")}
    for r in result["results"]:
        assert r["rows_per_request"] == 1 and r["failures"] == 0 and r["rps"] > 0
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["cpu_ms_per_request"] is not None and r["cpu_ms_per_request"] >= 0
        assert (r["rows_per_s"] is None) == r["target"].startswith("nginx_")
    sklearn = report.find(result["results"], "sklearn_gunicorn", 1, "locust")
    assert sklearn["cpu_ms_per_request"] > 0  # sklearn's predict costs milliseconds: ticks must show
    fixed = [r for r in result["runs"] if r["phase"] == "fixed_rate"]
    assert fixed and all(r["offered_rps"] == 100 for r in fixed)
    assert all(r["versions"] == {"1": r["requests"]} for r in result["runs"] if r.get("versions") and r["target"].startswith(("go_", "sklearn")))

    assert [r["first"] for r in result["paired"]] == ["go_nginx", "nginx_go_healthz"]  # the order alternates
    assert all(r["failures"] == 0 and r["go_nginx_rps"] > 0 and r["ratio"] > 0 for r in result["paired"])

    batching = {(r["target"], r["loadgen"], r["batching"]) for r in result["batching"]}
    assert batching == {(t, g, b) for t in ("go_direct", "go_nginx") for g in ("locust", "wrk") for b in bench.BATCHING}
    assert all(r["failures"] == 0 for r in result["batching"])

    assert (out / "bench.md").read_text().startswith("# skl2go benchmark")
    assert "## Dynamic batching" in (out / "bench.md").read_text()
    assert "## Predict vs /healthz through nginx, alternating rounds" in (out / "bench.md").read_text()
    assert (out / "bench.png").stat().st_size > 10_000
    assert (out / "locust" / "go_nginx-rows1.html").stat().st_size > 0
    assert (out / "locust" / "go_nginx-rows1_stats.csv").read_text().count("predict rows=1") == 1

    # everything started is stopped: no pid file left, no process serving these models
    states = list((out / "bench-run").glob("topology-*"))
    assert states and all(list(state.glob("*.pid")) == [] for state in states)
    leftovers = subprocess.run(["pgrep", "-f", str(models)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
