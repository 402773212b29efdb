"""The real topology: `make up` starts 2 Go replicas behind nginx on loopback;
held-out trips sent through nginx must come back as sklearn predicts them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from topology import exchange, listening, request, running, start, wait_until
from conftest import REPLICAS
from train import agreement, data


@pytest.fixture(scope="module")
def own_topology(repository, tmp_path_factory):
    """A topology of this module's own, for the tests that break it."""
    with running(repository.models, tmp_path_factory.mktemp("run"), replicas=REPLICAS) as topology:
        yield topology


def predict(url: str, name: str, rows: pd.DataFrame) -> tuple[int, dict]:
    body = json.dumps({"instances": rows.to_dict(orient="records")}).encode()
    return request("POST", f"{url}/v1/models/{name}:predict", body)


@pytest.mark.parametrize("name", ["trip_duration", "trip_duration_hgb"])
def test_held_out_trips_through_nginx_match_sklearn(topology, repository, name, capsys):
    held_out = pd.read_parquet(repository.build / name / "validation.parquet").drop(columns=[data.TARGET])
    assert len(held_out) >= 1000
    sklearn = joblib.load(repository.models / name / "1" / "pipeline.joblib")
    want = sklearn.predict(held_out)

    got = []
    for start in range(0, 100):  # single-row requests, the common case
        status, body = predict(topology.url, name, held_out.iloc[start:start + 1])
        assert status == 200, body
        got += body["predictions"]
    for start in range(100, len(held_out), 500):  # and batches
        status, body = predict(topology.url, name, held_out.iloc[start:start + 500])
        assert status == 200, body
        assert (body["model"], body["version"]) == (name, 1)
        got += body["predictions"]

    got = np.asarray(got, dtype=np.float64)
    abs_err = np.abs(got - want)
    rel_err = abs_err / np.maximum(np.abs(want), 1.0)
    with capsys.disabled():
        print(f"\n{name}: {len(got):,} held-out rows through nginx: "
              f"max abs difference {abs_err.max():.3g} min, max relative difference {rel_err.max():.3g}")
    assert len(got) == len(held_out)
    assert rel_err.max() <= agreement.RTOL


def test_classifier_through_nginx_answers_labels_and_probabilities_like_sklearn(topology, repository, capsys):
    held_out = pd.read_parquet(repository.build / "tip_given" / "validation.parquet").drop(columns=[data.TIP_TARGET])
    assert len(held_out) >= 1000
    sklearn = joblib.load(repository.models / "tip_given" / "1" / "pipeline.joblib")
    answers = []
    for start in range(0, len(held_out), 500):
        status, body = predict(topology.url, "tip_given", held_out.iloc[start:start + 500])
        assert status == 200, body
        answers += body["predictions"]
    assert all(set(a) == {"label", "probabilities"} for a in answers)
    result = agreement.classification([a["label"] for a in answers], [a["probabilities"] for a in answers],
                                      sklearn.predict(held_out), sklearn.predict_proba(held_out))
    with capsys.disabled():
        print(f"\ntip_given: {result.rows:,} held-out rows through nginx: labels {result.label_agreement:.2%} "
              f"identical, max probability difference {result.max_proba_abs_error:.3g}")
    assert result.rows == len(held_out)
    assert result.within_bound
    assert {0, 1} <= {a["label"] for a in answers}  # it learned something: both answers occur


def test_both_replicas_serve(topology):
    served = []
    for replica in topology.replicas:
        status, text = request("GET", f"{replica}/metrics")
        assert status == 200
        rows = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("skl2go_inference_count_total{"))
        served.append(rows)
    assert all(rows > 0 for rows in served), f"rows predicted per replica: {served}"


def test_metadata_through_nginx_is_the_clients_part_of_model_json(topology, repository):
    status, body = request("GET", f"{topology.url}/v1/models/trip_duration")
    assert status == 200
    meta = json.loads((repository.models / "trip_duration" / "1" / "model.json").read_text())
    def spec(tensors: list[dict]) -> list[dict]:
        return [{k: t[k] for k in ("name", "type", "shape", "range") if k in t} for t in tensors]

    # The rest (files, training data, libraries, example values, …) stays on disk.
    assert body == {"name": meta["name"], "version": meta["version"], "task": meta["task"],
                    "inputs": spec(meta["inputs"]), "outputs": spec(meta["outputs"])}


@pytest.mark.parametrize(
    "path, body, content_type, status, needle",
    [
        ("/v1/models/trip_duration:predict", {"instances": [{"PULocationID": 74, "DOLocationID": 75,
                                                             "pickup_hour": 8, "pickup_weekday": 1}]},
         "application/json", 400, "trip_distance"),
        ("/v1/models/trip_duration:predict", {"instances": [{"PULocationID": 74, "DOLocationID": 75,
                                                             "trip_distance": "far", "pickup_hour": 8,
                                                             "pickup_weekday": 1}]},
         "application/json", 400, "trip_distance"),
        ("/v1/models/trip_duration:predict", {"instances": []}, "application/json", 400, "instances"),
        ("/v1/models/no_such_model:predict", {"instances": [{}]}, "application/json", 404, "no_such_model"),
        ("/v1/models/trip_duration:predict", {"instances": [{}]}, "text/plain", 415, "application/json"),
    ],
)
def test_bad_requests_through_nginx_get_clear_json_errors(topology, path, body, content_type, status, needle):
    got_status, got = request("POST", topology.url + path, json.dumps(body).encode(), content_type)
    assert got_status == status
    assert needle in got["error"]


def test_nginx_gives_each_request_an_id_that_the_client_and_its_log_see(topology):
    body = json.dumps({"instances": [{"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5,
                                      "pickup_hour": 8, "pickup_weekday": 1}]}).encode()
    url = f"{topology.url}/v1/models/trip_duration:predict"
    status, _, headers = exchange("POST", url, body, {"Content-Type": "application/json", "X-Request-ID": "client-chosen"})
    assert status == 200
    assert headers.get_all("X-Request-ID") == ["client-chosen"]  # the client's, passed through, once
    status, _, headers = exchange("POST", url, body, {"Content-Type": "application/json"})
    assert status == 200
    request_id = headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # none sent: nginx's own
    log = topology.state / "logs" / "nginx-access.log"  # buffered by nginx, flushed within a second
    line = wait_until("nginx to log the request", lambda: next(
        (line for line in log.read_text().splitlines() if f"request_id={request_id}" in line), None), timeout=10)
    assert '"POST /v1/models/trip_duration:predict HTTP/1.1" 200' in line
    assert re.search(r"upstream=127\.0\.0\.1:\d+ upstream_status=200 ", line)


def test_metrics_are_not_exposed_through_nginx(topology):
    status, body = request("GET", f"{topology.url}/metrics")
    assert status == 404 and "error" in body


def test_nginx_fails_over_when_a_replica_dies(own_topology, repository):
    topology = own_topology
    pid = int((topology.state / "replica-1.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    held_out = pd.read_parquet(repository.build / "trip_duration" / "validation.parquet").drop(columns=[data.TARGET])
    statuses = [predict(topology.url, "trip_duration", held_out.iloc[i:i + 1])[0] for i in range(50)]
    assert statuses == [200] * 50


def test_down_stops_exactly_what_up_started(own_topology):
    topology = own_topology
    pids = [int(p.read_text()) for p in topology.state.glob("*.pid")]
    assert len(pids) == REPLICAS + 1  # the replicas and nginx's master
    done = topology.down()
    assert done.returncode == 0, done.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert list(topology.state.glob("*.pid")) == []
    assert not any(listening(int(url.rsplit(":", 1)[1])) for url in [topology.url, *topology.replicas])


def test_up_refuses_a_model_repository_that_disagrees_with_its_graph(repository, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(repository.models / "trip_duration", models / "trip_duration")
    meta_file = models / "trip_duration" / "1" / "model.json"
    meta = json.loads(meta_file.read_text())
    meta["inputs"][2]["type"] = "tensor(double)"  # the graph says tensor(float)
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(RuntimeError, match="make up failed") as refused:
        start(models, tmp_path / "run")
    assert "trip_distance" in str(refused.value) and "tensor(double)" in str(refused.value)
