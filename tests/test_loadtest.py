"""The load-test kit: the sklearn baseline answers like sklearn and refuses bad
input like the Go server; the Locust user sends held-out trips and counts
every wrong answer as a failure.
"""

from __future__ import annotations

import csv
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from loadtest import baseline, bench, samples
from loadtest.topology import free_ports

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "serve-go" / "bin" / "skl2go-server"


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def held_out(repository) -> pd.DataFrame:
    return samples.held_out_features(repository.build / "trip_duration")


@pytest.fixture(scope="module")
def gunicorn(repository, tmp_path_factory):
    """The baseline under gunicorn, as `make bench` runs it."""
    port = free_ports(1)
    process = bench.start_baseline(repository.models, port, tmp_path_factory.mktemp("logs") / "gunicorn.log", workers=2)
    yield f"http://127.0.0.1:{port}"
    bench.stop(process)


@pytest.fixture(scope="module")
def go_server(repository, tmp_path_factory):
    """One Go replica, to compare the baseline's answers with."""
    port = free_ports(1)
    log = tmp_path_factory.mktemp("logs") / "replica.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(SERVER), "--models", str(repository.models), "--addr", f"127.0.0.1:{port}"],
                                   stdout=out, stderr=subprocess.STDOUT)
    bench.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60, process=process)
    yield f"http://127.0.0.1:{port}"
    bench.stop(process)


def test_request_bodies_are_held_out_rows(held_out, repository):
    bodies = samples.request_bodies(held_out, rows_per_request=100, count=3, seed=1)
    assert len(bodies) == 3
    features = list(json.loads((repository.build / "trip_duration" / "training.json").read_text())["features"])
    known = {tuple(row.values()) for row in samples.instances(held_out)}
    for body in bodies:
        rows = json.loads(body)["instances"]
        assert len(rows) == 100
        assert all(list(row) == features for row in rows)
        assert all(tuple(row.values()) in known for row in rows)
    # float32 distances are written as a client would, not as their float64 expansion
    assert all(len(repr(row["trip_distance"])) <= 10 for row in json.loads(bodies[0])["instances"])
    assert samples.request_bodies(held_out, 100, 3, seed=1) == bodies  # reproducible


def test_baseline_answers_like_sklearn(repository, held_out):
    client = baseline.create_app(repository.models).test_client()
    pipeline = joblib.load(repository.models / "trip_duration" / "1" / "pipeline.joblib")
    for rows in (held_out.iloc[:1], held_out.iloc[1:1001]):
        body = json.dumps({"instances": samples.instances(rows)})
        resp = client.post("/v1/models/trip_duration:predict", data=body, content_type="application/json")
        assert resp.status_code == 200, resp.json
        assert (resp.json["model"], resp.json["version"]) == ("trip_duration", 1)
        np.testing.assert_array_equal(resp.json["predictions"], pipeline.predict(rows))


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
def test_baseline_refuses_bad_input_like_the_go_server(gunicorn, go_server, body, compare):
    path = "/v1/models/trip_duration:predict"
    go_status, go = post(go_server + path, body.encode())
    py_status, py = post(gunicorn + path, body.encode())
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
def test_baseline_routes_and_media_types_like_the_go_server(gunicorn, go_server, path, content_type, status):
    body = ('{"instances": [{%s}]}' % OK_ROW).encode()
    go_status, go = post(go_server + path, body, content_type)
    py_status, py = post(gunicorn + path, body, content_type)
    assert go_status == py_status == status
    assert py["error"] == go["error"]


@pytest.mark.parametrize("answer, problem", [
    ({"predictions": [1.5, 2.5], "model": "m", "version": 2}, ""),
    ({"predictions": [{"label": 1, "probabilities": [0.2, 0.8]}] * 2, "model": "m", "version": 2}, ""),
    ({"predictions": [1.5], "model": "m", "version": 2}, "expected 2 predictions, got 1"),
    ({"predictions": [1.5, "2"], "model": "m", "version": 2}, "not a finite number"),
    ({"predictions": [1.5, 2.5], "model": "other", "version": 2}, "names model 'other'"),
    ({"predictions": [1.5, 2.5], "model": "m", "version": True}, "version True"),
    ({"predictions": [1.5, 2.5], "model": "m", "version": 3}, "expected 2"),
    ({"error": "boom"}, "expected 2 predictions, got NoneType"),
])
def test_every_answer_is_checked(answer, problem):
    version, message = samples.check_prediction(json.dumps(answer).encode(), rows=2, name="m", version=2)
    if problem:
        assert version == 0 and problem in message
    else:
        assert (version, message) == (2, "")
    assert samples.check_prediction(b"<html>", 2, "m", 0) == (0, "answer is not JSON")


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
