"""`make bench`, one very short real run (gunicorn, 2 Go replicas, nginx,
Locust, wrk) that must write bench.json in the issue's shape and leave no
process behind. Speed itself is never asserted here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from loadtest import bench, report
from topology import ROOT

RESULT_KEYS = {"target", "rows_per_request", "loadgen", "rps", "rows_per_s", "p50_ms", "p95_ms", "p99_ms",
               "failures", "cpu_ms_per_request"}
TARGETS = {"sklearn_gunicorn", "fastapi_ort", "fastapi_ort_nginx", "go_direct", "go_nginx", "go_nginx_log0", "go_nginx_log100",
           "nginx_static", "nginx_go_healthz"}


FAMILIES = ["linear", "random_forest", "random_forest_classifier"]  # a subset, to stay short


def test_a_short_real_bench_run_writes_every_report_and_cleans_up(repository, every_family, tmp_path):
    models = tmp_path / "models"  # a path of its own, to find the processes started from it
    shutil.copytree(repository.models / "trip_duration", models / "trip_duration")
    out = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--models", str(models), "--name", "trip_duration",
         "--held-out", str(repository.build / "trip_duration"), "--out", str(out), "--rows", "1", "--duration", "1",
         "--rounds", "2", "--families", str(every_family.models.parent), "--only-families", ",".join(FAMILIES),
         "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=400)
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
    assert [r["first"] for r in result["peer_paired"]] == ["go_nginx", "fastapi_ort_nginx"]  # against the peer behind nginx
    assert all(r["failures"] == 0 and r["fastapi_ort_nginx_rps"] > 0 and r["ratio"] > 0 for r in result["peer_paired"])
    assert "## nginx + 2 Go vs FastAPI + ORT behind the same nginx, alternating rounds" in (out / "bench.md").read_text()

    batching = {(r["target"], r["loadgen"], r["batching"]) for r in result["batching"]}
    assert batching == {(t, g, b) for t in ("go_direct", "go_nginx") for g in ("locust", "wrk") for b in bench.BATCHING}
    assert all(r["failures"] == 0 for r in result["batching"])

    (grpc,) = result["grpc"]  # gRPC through nginx, at the one request size run (bench.GRPC_ROWS)
    assert (grpc["target"], grpc["loadgen"], grpc["rows_per_request"]) == ("go_grpc_nginx", "grpcload", 1)
    assert grpc["failures"] == 0 and grpc["requests"] > 0 and grpc["cpu_ms_per_request"] is not None
    assert "## gRPC through nginx" in (out / "bench.md").read_text()
    assert (out / "bench.md").read_text().startswith("# skl2go benchmark")
    assert "## Dynamic batching" in (out / "bench.md").read_text()
    assert "## Predict vs /healthz through nginx, alternating rounds" in (out / "bench.md").read_text()
    # the overload phase: open loop through nginx at factors of go_nginx's capacity, per deadline
    overload = result["overload"]
    assert [(r["deadline"], r["factor"]) for r in overload] == [
        (d, f) for d in bench.Settings().overload_deadlines for f in bench.Settings().overload_factors]
    for r in overload:
        assert r["sent"] == r["ok"] + r["unavailable_retry_after"] + r["unavailable_no_retry_after"] + r["other_errors"]
        assert r["ok"] > 0 and len(r["shed_total"]) == 2
    assert "## Overload: beyond the stack's capacity" in (out / "bench.md").read_text()
    # the shadow phase: the forest mirroring linear, on and off, every answer the control's
    shadow = result["shadow"]
    assert shadow["pairs"] and shadow["wrong_answers"] == 0 and shadow["mirror_runs"] > 0, shadow
    # the families phase: each family through nginx, the replicas' memory, the forest's hot reload
    assert [r["family"] for r in result["families"]] == FAMILIES
    for r in result["families"]:
        assert set(r) == RESULT_KEYS | {"family", "task", "model"}
        assert (r["target"], r["loadgen"], r["rows_per_request"]) == ("go_nginx", "wrk", 1)
        assert r["model"] == every_family.names[r["family"]] and r["failures"] == 0 and r["rps"] > 0
    every = result["memory"]["all_families"]
    assert len(every["families"]) == 8 and every["replicas"] == 2
    assert all(v > 0 for v in every["rss_mb_after_load"] + every["rss_mb_after_requests"])
    assert [a["family"] for a in result["memory"]["alone"]] == FAMILIES
    assert all(a["rss_mb_after_load"] > 0 for a in result["memory"]["alone"])
    assert all(s > 0 for secs in result["memory"]["load_seconds_at_start"].values() for s in secs)
    reload = result["hot_reload"]
    assert (reload["family"], reload["new_version"]) == ("random_forest", reload["old_version"] + 1)
    assert all(reload[w]["failures"] == 0 for w in ("before", "during", "after"))
    assert reload["before"]["requests"] > 0 and reload["after"]["requests"] > 0
    assert set(reload["versions"]) == {str(reload["old_version"]), str(reload["new_version"])}
    assert len(reload["load_seconds"]) == 2 and all(s > 0 for s in reload["load_seconds"])
    for section in ("## Model families through nginx", "## Memory per replica", "## Hot reload of the largest forest"):
        assert section in (out / "bench.md").read_text()
    assert (out / "bench.png").stat().st_size > 10_000
    assert (out / "locust" / "go_nginx-rows1.html").stat().st_size > 0
    assert (out / "locust" / "go_nginx-rows1_stats.csv").read_text().count("predict rows=1") == 1

    # everything started is stopped: no pid file left, no process serving these models
    states = list((out / "bench-run").glob("topology-*"))
    assert states and all(list(state.glob("*.pid")) == [] for state in states)
    for path in (models, out / "bench-run"):
        leftovers = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, text=True).stdout.split()
        assert leftovers == []
