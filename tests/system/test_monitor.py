"""The monitor end to end: a log of traffic from the training distribution
shows no drift, a shifted month shows drift on the shifted inputs and the
prediction; figures land in a real PostgreSQL and come out as Prometheus
gauges. The monitor runs as `make monitor` runs it, from .venv-monitor."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

import joblib
import pytest
import urllib.parse

import inference_log
from conftest import ROOT
from topology import free_ports, prometheus
from topology.probe import request, wait_until

MONITOR_PY = ROOT / ".venv-monitor" / "bin" / "python"
DASHBOARD = ROOT / "serve-go" / "grafana" / "skl2go-dashboard.json"
ROWS = 4000

pytestmark = pytest.mark.skipif(not MONITOR_PY.exists(), reason="no .venv-monitor: make .venv-monitor/.installed")


def monitor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(MONITOR_PY), "-m", "monitor", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def summary(out, name: str) -> dict:
    [path] = sorted((out / name).glob("*.json"))
    assert path.with_suffix(".html").is_file() and path.with_name(path.stem + "-quality.html").is_file()
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def logged(repository, tmp_path_factory):
    """Two states: trip_duration's unseen training rows (and tip_given's), and
    the same trips shifted; each with its actuals."""
    now = datetime.now(timezone.utc)
    states = {}
    model = joblib.load(repository.models / "trip_duration" / "1" / "pipeline.joblib")
    X, y = inference_log.unseen_training_rows(repository.trips)
    X, y = X.iloc[:ROWS], y.iloc[:ROWS]
    for kind, (Xk, yk) in {"training": (X, y), "shifted": inference_log.shift(X, y)}.items():
        state = tmp_path_factory.mktemp(kind)
        inference_log.write_log(state, "replica-1", Xk.iloc[::2], model.predict(Xk.iloc[::2]), "trip_duration", 1,
                                now - timedelta(minutes=20), actuals=yk.iloc[::2].to_numpy())
        inference_log.write_log(state, "replica-2", Xk.iloc[1::2], model.predict(Xk.iloc[1::2]), "trip_duration", 1,
                                now - timedelta(minutes=20), actuals=yk.iloc[1::2].to_numpy())
        states[kind] = state
    tips = joblib.load(repository.models / "tip_given" / "1" / "pipeline.joblib")
    Xc, yc = inference_log.unseen_training_rows(repository.trips, "classification")
    Xc, yc = Xc.iloc[:2000], yc.iloc[:2000]
    inference_log.write_log(states["training"], "replica-1", Xc, tips.predict(Xc), "tip_given", 1,
                            now - timedelta(minutes=10), probabilities=tips.predict_proba(Xc), actuals=yc.to_numpy())
    return states


def test_training_traffic_no_drift_shifted_traffic_drifts_and_figures_are_stored(repository, logged, postgres_url,
                                                                                tmp_path):
    results = {}
    for kind, state in logged.items():
        out = tmp_path / kind
        run = monitor("report", "--state", str(state), "--models", str(repository.models), "--since", "1h",
                      "--out", str(out), "--db", postgres_url)
        assert run.returncode == 0, run.stderr
        results[kind] = summary(out, "trip_duration")

    calm, moved = results["training"], results["shifted"]
    for s in (calm, moved):
        assert (s["model"], s["version"], s["window"]["rows"], s["window"]["requests"]) == (
            "trip_duration", 1, ROWS, ROWS // 50)
        assert set(s["inputs"]) == {"PULocationID", "DOLocationID", "trip_distance", "pickup_hour", "pickup_weekday"}
        assert s["inputs"]["trip_distance"]["missing_rate"] == 0 and s["inputs"]["trip_distance"]["out_of_range_rate"] == 0
        assert s["quality"]["rows"] == ROWS
    assert calm["drifted_inputs"] == [] and not calm["prediction"]["drifted"]
    assert moved["drifted_inputs"] == ["pickup_hour", "trip_distance"] and moved["prediction"]["drifted"]
    assert moved["inputs"]["trip_distance"]["drift_score"] > 3 * calm["inputs"]["trip_distance"]["drift_score"]
    # Served on its own training distribution, the model is as good as on validation; not on the shifted month.
    assert calm["quality"]["rmse"] < 1.5 * calm["quality"]["validation_rmse"]
    assert moved["quality"]["rmse"] > 2 * calm["quality"]["rmse"]

    tips = summary(tmp_path / "training", "tip_given")
    assert tips["prediction"]["column"] == "probability" and not tips["prediction"]["drifted"]
    assert tips["drifted_inputs"] == []
    assert abs(tips["quality"]["accuracy"] - tips["quality"]["validation_accuracy"]) < 0.05

    # The gauges, from the database both windows were written to (the newest per version wins).
    port = free_ports(1)
    exporter = subprocess.Popen([str(MONITOR_PY), "-m", "monitor", "serve", "--db", postgres_url, "--port", str(port)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def scrape():
            try:
                status, body = request("GET", f"http://127.0.0.1:{port}/metrics")
            except OSError:
                return None
            return body if status == 200 and "skl2go_monitor_db_up 1.0" in body else None
        body = wait_until("the exporter", scrape, timeout=60)
    finally:
        exporter.terminate()
        exporter.wait(10)
    gauges = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
              if line.startswith("skl2go_")}
    key = 'model="trip_duration",version="1"'
    assert gauges[f'skl2go_drifted{{feature="trip_distance",{key}}}'] == 1.0
    assert gauges[f'skl2go_drifted{{feature="prediction",{key}}}'] == 1.0
    assert gauges[f'skl2go_drift_score{{feature="trip_distance",{key}}}'] == pytest.approx(
        moved["inputs"]["trip_distance"]["drift_score"])
    assert gauges[f"skl2go_quality_rmse{{{key}}}"] == pytest.approx(moved["quality"]["rmse"])
    assert gauges['skl2go_quality_accuracy{model="tip_given",version="1"}'] == pytest.approx(tips["quality"]["accuracy"])


def test_rerunning_a_window_replaces_its_figures(repository, logged, postgres_url, tmp_path):
    end = (datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for _ in range(2):
        run = monitor("report", "--state", str(logged["shifted"]), "--models", str(repository.models), "--since",
                      "1h", "--name", "trip_duration", "--out", str(tmp_path), "--db", postgres_url, "--end", end)
        assert run.returncode == 0, run.stderr
    query = ("import sys, psycopg; c = psycopg.connect(sys.argv[1]); print(c.execute("
             "'SELECT count(*) FROM monitor_window WHERE window_end = %s', (sys.argv[2],)).fetchone()[0], "
             "c.execute('SELECT count(*) FROM monitor_input WHERE window_end = %s', (sys.argv[2],)).fetchone()[0])")
    counts = subprocess.run([str(MONITOR_PY), "-c", query, postgres_url, end], capture_output=True, text=True, check=True)
    assert counts.stdout.split() == ["1", "5"]


@pytest.mark.parametrize("case, message", [
    ("no log", "no inference log"),
    ("too few", "too few rows in the window for model trip_duration: trip_duration v1: 50 rows; need at least 100"),
    ("no reference", "no reference data for trip_duration version 1"),
])
def test_nothing_to_report_is_a_clear_error(repository, tmp_path, case, message):
    models = repository.models
    if case != "no log":
        model = joblib.load(repository.models / "trip_duration" / "1" / "pipeline.joblib")
        X, _ = inference_log.unseen_training_rows(repository.trips)
        n = 50 if case == "too few" else 200
        inference_log.write_log(tmp_path, "replica-1", X.iloc[:n], model.predict(X.iloc[:n]), "trip_duration", 1,
                                datetime.now(timezone.utc) - timedelta(minutes=1))
    if case == "no reference":
        models = tmp_path / "models"
        (models / "trip_duration" / "1").mkdir(parents=True)
        (models / "trip_duration" / "1" / "model.json").write_bytes(
            (repository.models / "trip_duration" / "1" / "model.json").read_bytes())
    run = monitor("report", "--state", str(tmp_path), "--models", str(models), "--since", "1h", "--name",
                  "trip_duration", "--out", str(tmp_path / "out"))
    assert run.returncode == 1
    assert message in run.stderr, run.stderr


def test_dashboard_monitor_panels_answer_from_real_prometheus_and_database(repository, logged, postgres_url,
                                                                           tmp_path):
    """Each Monitor panel's PromQL through a real Prometheus scraping the
    exporter, and each SQL panel's query on the real database, return rows."""
    run = monitor("report", "--state", str(logged["training"]), "--models", str(repository.models), "--since", "1h",
                  "--out", str(tmp_path / "out"), "--db", postgres_url)
    assert run.returncode == 0, run.stderr
    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"].startswith("Monitor:")]
    promql = [(p["title"], t["expr"]) for p in panels if p["datasource"]["type"] == "prometheus" for t in p["targets"]]
    sql = [(p["title"], t["rawSql"]) for p in panels if p["datasource"]["type"] != "prometheus" for t in p["targets"]]
    assert len(promql) >= 4 and len(sql) >= 2

    port = free_ports(2)
    exporter = subprocess.Popen([str(MONITOR_PY), "-m", "monitor", "serve", "--db", postgres_url, "--port", str(port)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = prometheus.Server(tmp_path / "state", port + 1)
    try:
        prometheus.start(server, [], f"127.0.0.1:{port}")

        def query(expr: str):
            url = f"{server.url}/api/v1/query?query={urllib.parse.quote(expr.replace('$model', '.*'))}"
            status, body = request("GET", url)
            assert status == 200 and body["status"] == "success", body
            return body["data"]["result"]
        wait_until("Prometheus to scrape the exporter", lambda: query("skl2go_drift_score"), timeout=90)
        for title, expr in promql:
            assert query(expr), f"{title}: {expr} returned nothing"
    finally:
        prometheus.stop(server)
        exporter.terminate()
        exporter.wait(10)
    script = ("import sys, json, psycopg; c = psycopg.connect(sys.argv[1]); "
              "print(json.dumps([len(c.execute(q).fetchall()) for q in json.loads(sys.argv[2])]))")
    queries = [q.replace("$__timeFilter(window_end)", "window_end > now() - interval '1 day'") for _, q in sql]
    counts = subprocess.run([str(MONITOR_PY), "-c", script, postgres_url, json.dumps(queries)], capture_output=True,
                            text=True, check=True)
    for (title, _), n in zip(sql, json.loads(counts.stdout)):
        assert n > 0, f"{title}: no rows"


def test_an_input_with_no_value_in_the_window_counts_as_drifted(repository):
    script = """
import json, sys
import pandas as pd
from monitor import report
version = sys.argv[1]
meta = json.load(open(version + "/model.json"))
reference = pd.read_parquet(version + "/reference.parquet")
current = reference.sample(500, random_state=0).assign(trip_distance=None)
_, scores = report.drift(reference, current, meta)
print(json.dumps({"scores": scores, "quality": report.data_quality(current, reference, meta)}))
"""
    done = subprocess.run([str(MONITOR_PY), "-c", script, str(repository.models / "trip_duration" / "1")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["scores"]["trip_distance"] == {"drift_score": 1.0, "drifted": True, "method": "no value in the window",
                                              "threshold": 0.0}
    assert out["quality"]["trip_distance"]["missing_rate"] == 1.0
    assert not out["scores"]["prediction"]["drifted"] and not out["scores"]["PULocationID"]["drifted"]
