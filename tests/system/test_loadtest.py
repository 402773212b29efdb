"""The load-test kit against real servers: the sklearn baseline under gunicorn
and the FastAPI + ONNX Runtime peer refuse bad input like the Go server, and
the peer answers like sklearn; the Locust user sends held-out trips and
counts every wrong answer as a failure.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from loadtest import bench
from topology import ROOT, exchange, free_ports, processes, wait_http

SERVER = ROOT / "serve-go" / "bin" / "skl2go-server"


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    status, answer, _ = exchange("POST", url, body, {"Content-Type": content_type})
    return status, json.loads(answer)


@pytest.fixture(scope="module")
def gunicorn(repository, tmp_path_factory):
    """The baseline under gunicorn, as `make bench` runs it."""
    port = free_ports(1)
    process = bench.start_baseline(repository.models, port, tmp_path_factory.mktemp("logs") / "gunicorn.log", workers=2)
    yield f"http://127.0.0.1:{port}"
    processes.terminate(process)


@pytest.fixture(scope="module")
def fastapi_ort(repository, tmp_path_factory):
    """The FastAPI + uvicorn + ONNX Runtime peer, as `make bench` runs it."""
    port = free_ports(1)
    process = bench.start_fastapi_ort(repository.models, port, tmp_path_factory.mktemp("logs") / "uvicorn.log",
                                      workers=2)
    yield f"http://127.0.0.1:{port}"
    processes.terminate(process)


@pytest.fixture(scope="module", params=["gunicorn", "fastapi_ort"])
def peer(request):
    """Each Python server of the benchmark in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def go_server(repository, tmp_path_factory):
    """One Go replica, to compare the baseline's answers with."""
    port = free_ports(1)
    log = tmp_path_factory.mktemp("logs") / "replica.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(SERVER), "--models", str(repository.models), "--addr", f"127.0.0.1:{port}"],
                                   stdout=out, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60, alive=lambda: process.poll() is None)
    yield f"http://127.0.0.1:{port}"
    processes.terminate(process)


OK_ROW = '"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8, "pickup_weekday": 1'
BAD_BODIES = [
    ('{"instances": [{"PULocationID": "74"}]}', "same"),
    ('{"instances": [{%s, "extra": 1}]}' % OK_ROW, "same"),
    ('{"instances": [{%s, "PULocationID": 1}]}' % OK_ROW, "same"),
    ('{"instances": [{%s}]}' % OK_ROW.replace("74", "74.5"), "same"),
    ('{"instances": [{%s}]}' % OK_ROW.replace("2.5", "null"), "same"),
    ('{"instances": [{%s}]}' % OK_ROW.replace("2.5", "true"), "same"),
    ('{"instances": [{%s}]}' % OK_ROW.replace("2.5", "[1]"), "same"),
    ('{"instances": [{%s}]}' % OK_ROW.replace("74", "9223372036854775808"), "same"),
    ('{"instances": [{%s}]}' % OK_ROW.replace("2.5", "1e39"), "field"),  # 1e39 vs 1e+39
    ('{"instances": [{%s}]}' % OK_ROW.replace(', "pickup_hour": 8', ""), "same"),
    ('{"instances": [{%s}]}' % OK_ROW.replace("2.5", "1000.5"), "same"),  # outside model.json's range
    ('{"instances": [{%s}, {%s}]}' % (OK_ROW, OK_ROW.replace("2.5", "-3")), "same"),
    ('{"instances": [{%s}, 1]}' % OK_ROW, "same"),
    ('{"instances": [{%s}, {%s}, {"DOLocationID": "x"}]}' % (OK_ROW, OK_ROW), "same"),
    ('{"instances": {}}', "same"),
    ('{"instances": []}', "same"),
    ('{"instances": [{%s}], "x": 1}' % OK_ROW, "same"),
    ('{"instances": [{%s}], "instances": []}' % OK_ROW, "same"),
    ('{}', "same"),
    ('[]', "same"),
    ('', "same"),
    ('{"instances": [{%s}]} x' % OK_ROW, "malformed"),
    ('{"instances": [{"PULocationID": NaN}]}', "malformed"),
    ('{"instances": [{%s' % OK_ROW, "malformed"),
]


@pytest.mark.parametrize("body, compare", BAD_BODIES)
def test_python_peers_refuse_bad_input_like_the_go_server(peer, go_server, body, compare):
    path = "/v1/models/trip_duration:predict"
    go_status, go = post(go_server + path, body.encode())
    py_status, py = post(peer + path, body.encode())
    assert go_status == py_status == 400
    if compare == "same":
        assert py["error"] == go["error"]
    elif compare == "field":
        assert py["error"].split(":")[0] == go["error"].split(":")[0]
    else:
        # the Go server also names the field when the bad syntax is a value's (NaN)
        assert py["error"].startswith("malformed JSON") and "malformed JSON" in go["error"]


@pytest.mark.parametrize("path, content_type, status", [
    ("/v1/models/nope:predict", "application/json", 404),
    ("/v1/models/trip_duration/versions/9:predict", "application/json", 404),
    ("/v1/models/trip_duration/versions/x:predict", "application/json", 400),
    ("/v1/models/trip_duration:predict", "text/plain", 415),
])
def test_python_peers_route_and_check_media_types_like_the_go_server(peer, go_server, path, content_type, status):
    body = ('{"instances": [{%s}]}' % OK_ROW).encode()
    go_status, go = post(go_server + path, body, content_type)
    py_status, py = post(peer + path, body, content_type)
    assert go_status == py_status == status
    assert py["error"] == go["error"]


ROWS = [OK_ROW, OK_ROW.replace("2.5", "11.25"), OK_ROW.replace("74", "132").replace('"pickup_hour": 8', '"pickup_hour": 23')]


@pytest.mark.parametrize("model", ["trip_duration", "tip_given"])
def test_fastapi_ort_answers_like_sklearn(gunicorn, fastapi_ort, model):
    body = ('{"instances": [%s]}' % ", ".join("{%s}" % row for row in ROWS)).encode()
    sk_status, sk = post(f"{gunicorn}/v1/models/{model}:predict", body)
    ort_status, ort = post(f"{fastapi_ort}/v1/models/{model}:predict", body)
    assert sk_status == ort_status == 200
    assert (ort["model"], ort["version"]) == (sk["model"], sk["version"])
    assert len(ort["predictions"]) == len(sk["predictions"]) == len(ROWS)
    for got, want in zip(ort["predictions"], sk["predictions"]):
        if isinstance(want, dict):  # a classifier: the same label, float32 probabilities
            assert got["label"] == want["label"]
            assert got["probabilities"] == pytest.approx(want["probabilities"], rel=1e-4, abs=1e-5)
        else:
            assert got == pytest.approx(want, rel=1e-4, abs=1e-3)


def run_locust(url: str, repository, out: Path, *args: str) -> tuple[dict, dict]:
    """A short headless Locust run; returns (summary file, Locust's CSV row)."""
    command = bench.locust_command() + [
        "--headless", "--users", "2", "--spawn-rate", "2", "--run-time", "3s", "--host", url,
        "--held-out", str(repository.build / "trip_duration"), "--bodies", "20",
        "--summary-file", str(out / "summary.json"), "--csv", str(out / "locust"), "--only-summary", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (out / "summary.json").exists(), done.stderr[-3000:]
    with open(out / "locust_stats.csv") as f:
        stats = next(row for row in csv.DictReader(f) if row["Name"] != "Aggregated")
    return json.loads((out / "summary.json").read_text()), stats


def test_locust_sends_held_out_trips_and_checks_answers(gunicorn, repository, tmp_path):
    summary, stats = run_locust(gunicorn, repository, tmp_path, "--rows-per-request", "100", "PredictUser")
    assert summary["requests"] > 0
    assert summary["failures"] == 0, summary["errors"]
    assert summary["rows"] == 100 * summary["requests"]
    assert summary["versions"] == {"1": summary["requests"]}
    assert summary["locust"]["requests"] == summary["requests"] and summary["locust"]["failures"] == 0
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    assert stats["Name"] == "predict rows=100"  # Locust's own report, complete
    assert int(stats["Request Count"]) == summary["requests"] and int(stats["Failure Count"]) == 0


def test_locust_counts_refused_requests_as_failures(gunicorn, repository, tmp_path):
    summary, stats = run_locust(gunicorn, repository, tmp_path, "--model-version", "9", "PredictUser")
    assert summary["requests"] > 0
    assert summary["failures"] == summary["requests"] == summary["locust"]["failures"]
    assert list(summary["errors"]) == ['HTTP 404: model "trip_duration" has no version 9 loaded (serving version 1)']
    assert summary["versions"] == {}
