"""`make bench`'s code paths that need no server: CPU accounting from /proc
and the report's ratios and verdicts. Speed itself is never asserted here.
"""

from __future__ import annotations

import os
import subprocess
import sys

from loadtest import report
from topology import processes

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
        kids = processes.children(parent.pid)
        assert len(kids) == 2
        assert processes.cpu_seconds(kids) >= 0.58
        assert processes.cpu_seconds([parent.pid] + kids) >= processes.cpu_seconds(kids)
        assert processes.cpu_seconds([2**22 + 12345]) == 0  # a pid that does not exist counts nothing
    finally:
        parent.kill()
        for kid in processes.children(parent.pid):
            subprocess.run(["kill", str(kid)])
        parent.wait()


def fake_result(target: str, rows: int, loadgen: str, rps: float, p99: float, cpu: float | None) -> dict:
    return {"target": target, "rows_per_request": rows, "loadgen": loadgen, "rps": rps,
            "rows_per_s": rps * rows if not target.startswith("nginx_") else None, "p50_ms": p99 / 3,
            "p95_ms": p99 / 2, "p99_ms": p99, "failures": 0, "cpu_ms_per_request": cpu}


def fake_bench(go_rps: float, go_p99: float, go_cpu: float, go_rows_1000: float, healthz_rps: float,
               peer_rps: float = 4_000, peer_p99: float = 30, direct_rps: float = 20_000, peer_direct_rps: float = 4_500) -> dict:
    results = [
        fake_result("fastapi_ort_nginx", 1, "wrk", peer_rps, peer_p99, 0.4),
        fake_result("fastapi_ort", 1, "wrk", peer_direct_rps, 20, 0.4),
        fake_result("go_direct", 1, "wrk", direct_rps, 5, 0.1),
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
    assert [g["met"] for g in met] == [True] * 6
    assert met[0]["measured"].startswith("40.0× (16,000 vs 400 req/s)")
    assert met[1]["measured"].startswith("1/30 ")
    assert met[3]["measured"].startswith("89% ")
    assert met[4]["measured"] == "4.00× (16,000 vs 4,000 req/s); p99 20.00 vs 30.00 ms"
    assert met[5]["measured"] == "4.44× (20,000 vs 4,500 req/s)"

    missed = report.goals(fake_bench(go_rps=11_000, go_p99=90, go_cpu=0.5, go_rows_1000=150_000, healthz_rps=18_000,
                                     peer_rps=4_000, peer_p99=100, direct_rps=17_000))
    assert [g["met"] for g in missed] == [False] * 6
    assert "27.5×" in missed[0]["measured"] and "p99 90.00 vs 60.00 ms" in missed[0]["measured"]
    assert missed[2]["measured"].startswith("0.75×")
    assert missed[4]["measured"] == "2.75× (11,000 vs 4,000 req/s); p99 90.00 vs 100.00 ms"
    assert missed[5]["measured"] == "3.78× (17,000 vs 4,500 req/s)"

    # alternating rounds, when the run has them, decide the /healthz share by their median
    rounds = fake_bench(go_rps=16_000, go_p99=20, go_cpu=0.2, go_rows_1000=250_000, healthz_rps=18_000)
    rounds["paired"] = [{"round": i + 1, "first": "go_nginx", "go_nginx_rps": p, "nginx_go_healthz_rps": 20_000,
                         "ratio": p / 20_000, "failures": 0} for i, p in enumerate([14_000, 17_000, 15_000])]
    share = report.goals(rounds)[3]
    assert share["met"] is False and share["measured"] == "75%, median of 3 alternating rounds (70–85%)"
    # and the lead over the peer behind nginx, with the median of each side's p99
    rounds["peer_paired"] = [{"round": i + 1, "first": "go_nginx", "go_nginx_rps": g, "fastapi_ort_nginx_rps": 3_000,
                              "go_nginx_p99_ms": 20, "fastapi_ort_nginx_p99_ms": p99, "ratio": g / 3_000, "failures": 0}
                             for i, (g, p99) in enumerate([(8_700, 25), (9_600, 15), (9_300, 22)])]
    lead = report.goals(rounds)[4]
    assert lead["met"] is True and lead["measured"] == (
        "3.10×, median of 3 alternating rounds (2.90–3.20×); median p99 20.00 vs 22.00 ms")
    for r in rounds["peer_paired"]:
        r["fastapi_ort_nginx_p99_ms"] = 19  # the lead holds, but not at a lower p99
    assert report.goals(rounds)[4]["met"] is False

    empty = report.goals({"results": []})
    assert [g["met"] for g in empty] == [None] * 6


def test_report_writes_tables_with_ratios_and_a_chart(tmp_path):
    bench_json = fake_bench(go_rps=16_000, go_p99=20, go_cpu=0.2, go_rows_1000=250_000, healthz_rps=18_000)
    bench_json["peer_paired"] = [{"round": 1, "first": "fastapi_ort_nginx", "go_nginx_rps": 9_000,
                                  "fastapi_ort_nginx_rps": 3_000, "go_nginx_p99_ms": 20, "fastapi_ort_nginx_p99_ms": 22,
                                  "ratio": 3.0, "failures": 0}]
    report.write(bench_json, tmp_path)
    md = (tmp_path / "bench.md").read_text()
    assert "| 1 | fastapi_ort_nginx | 9,000 | 3,000 | 3.00× | 20.00 | 22.00 | 0 |" in md
    assert "| go_nginx | wrk | 16,000 | 16,000 |" in md
    assert "| 40.0× | 1/30 |" in md  # req/s and CPU against the baseline of the same loadgen and size
    assert "| go_nginx | 1 | wrk | 16,000 | 8,000 | 0.50× |" in md  # batching on (the default), then off
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_sets_the_inference_log_at_100_percent_beside_off(tmp_path):
    bench_json = fake_bench(go_rps=16_000, go_p99=20, go_cpu=0.2, go_rows_1000=250_000, healthz_rps=18_000)
    bench_json["results"].append(fake_result("go_nginx_log0", 1, "wrk", 16_000, 20, 0.2))
    bench_json["results"].append(fake_result("go_nginx_log100", 1, "wrk", 12_000, 25, 0.3))
    bench_json["inference_log"] = {"written": 180_000, "dropped": 0}
    report.write(bench_json, tmp_path)
    md = (tmp_path / "bench.md").read_text()
    assert "## The inference log at 100% vs off, through nginx" in md
    assert "180,000 records written, 0 dropped" in md
    assert "| 1 | wrk | 16,000 | 12,000 | 0.75× | 20.00 | 25.00 | 0.200 | 0.300 |" in md
    assert "| go_nginx_log100 | wrk | 12,000 |" in md  # and in the table of its request size


def test_rss_bytes_reads_a_live_process_and_none_for_a_gone_one():
    assert processes.rss_bytes(os.getpid()) > 1 << 20  # this interpreter holds more than 1 MiB
    assert processes.rss_bytes(2**22 + 12345) is None  # a pid that does not exist has no RSS


def test_report_shows_the_families_memory_and_hot_reload(tmp_path):
    bench_json = fake_bench(go_rps=16_000, go_p99=20, go_cpu=0.2, go_rows_1000=250_000, healthz_rps=18_000)
    bench_json["families"] = [
        {**fake_result("go_nginx", 1, "wrk", 16_000, 20, 0.2), "family": "linear", "task": "regression",
         "model": "linear"},
        {**fake_result("go_nginx", 1, "wrk", 8_000, 30, 0.4), "family": "random_forest", "task": "regression",
         "model": "random_forest"}]
    bench_json["memory"] = {"all_families": {"families": ["linear", "random_forest"], "replicas": 2,
                                             "rss_mb_after_load": [100.0, 101.0], "rss_mb_after_requests": [150.0, 151.0]},
                            "alone": [{"family": "linear", "rss_mb_after_load": 40.0, "rss_mb_after_requests": 60.0}],
                            "load_seconds_at_start": {"random_forest": [2.0, 2.5]}}
    window = {"requests": 100, "failures": 0, "p50_ms": 1.0, "p99_ms": 5.0, "max_ms": 9.0}
    bench_json["hot_reload"] = {"family": "random_forest", "model": "random_forest", "onnx_mb": 10.0, "clients": 4,
                                "old_version": 1, "new_version": 2, "publish_to_ready_s": 3.0,
                                "publish_to_first_new_answer_s": 2.9, "load_seconds": [2.8, 2.7],
                                "before": window, "during": {**window, "p99_ms": 20.0}, "after": window,
                                "versions": {"1": 150, "2": 50}}
    report.write(bench_json, tmp_path)
    md = (tmp_path / "bench.md").read_text()
    assert "| `random_forest` | regression | 1 | 8,000 | 8,000 |" in md and "| 0.50× |" in md  # vs linear
    assert "| all 2 families | 100.0 / 101.0 | 150.0 / 151.0 |" in md
    assert "| `linear` alone | 40.0 | 60.0 |" in md
    assert "`random_forest` 2.00 / 2.50" in md
    assert "| during | 100 | 0 | 1.00 | 20.00 | 9.00 |" in md
    assert "answers by version: v1: 150, v2: 50" in md
