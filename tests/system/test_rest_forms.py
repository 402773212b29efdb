"""The request and answer forms other clients expect, through nginx with plain
HTTP (requests and curl): the V2 health bodies KServe documents, and TF
Serving's columnar predict form {"inputs": {column: [values]}} answered with
{"outputs": …}, checked against sklearn."""

from __future__ import annotations

import json
import subprocess

import joblib
import numpy as np
import pandas as pd
import requests

from train import agreement, data

REGRESSOR, CLASSIFIER = "trip_duration", "tip_given"


def held_out(repository, name: str, rows: int = 100) -> tuple[pd.DataFrame, object]:
    frame = pd.read_parquet(repository.build / name / "validation.parquet").iloc[:rows]
    frame = frame.drop(columns=[target for target in data.TARGETS.values() if target in frame])
    return frame, joblib.load(repository.models / name / "1" / "pipeline.joblib")


def test_v2_health_bodies(topology):
    for path, body in [("/v2/health/live", {"live": True}), ("/v2/health/ready", {"ready": True}),
                       (f"/v2/models/{REGRESSOR}/ready", {"name": REGRESSOR, "ready": True}),
                       (f"/v2/models/{CLASSIFIER}/versions/1/ready", {"name": CLASSIFIER, "ready": True})]:
        answer = requests.get(topology.url + path, timeout=10)
        assert (answer.status_code, answer.headers["Content-Type"], answer.json()) == (200, "application/json", body), path
    answer = requests.get(f"{topology.url}/v2/models/no_such_model/ready", timeout=10)
    assert answer.status_code == 404 and "no_such_model" in answer.json()["error"]


def columns(frame: pd.DataFrame) -> dict:
    return {"inputs": {column: values.tolist() for column, values in frame.items()}}


def test_columnar_regressor_matches_sklearn(topology, repository):
    rows, sklearn = held_out(repository, REGRESSOR)
    answer = requests.post(f"{topology.url}/v1/models/{REGRESSOR}:predict", json=columns(rows), timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"outputs", "model", "version"} and (body["model"], body["version"]) == (REGRESSOR, 1)
    result = agreement.regression(body["outputs"], sklearn.predict(rows))
    assert result.rows == len(rows) and result.within_bound


def test_columnar_classifier_matches_sklearn(topology, repository):
    rows, sklearn = held_out(repository, CLASSIFIER)
    answer = requests.post(f"{topology.url}/v1/models/{CLASSIFIER}:predict", json=columns(rows), timeout=10)
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert set(outputs) == {"label", "probabilities"}
    result = agreement.classification(outputs["label"], np.array(outputs["probabilities"]),
                                      sklearn.predict(rows), sklearn.predict_proba(rows))
    assert result.rows == len(rows) and result.within_bound


def test_columnar_with_curl_and_both_forms_refused(topology, repository):
    rows, sklearn = held_out(repository, REGRESSOR, rows=2)
    url = f"{topology.url}/v1/models/{REGRESSOR}:predict"
    run = subprocess.run(["curl", "-sS", "--fail-with-body", "-H", "Content-Type: application/json", url,
                          "-d", json.dumps(columns(rows))], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    assert agreement.regression(json.loads(run.stdout)["outputs"], sklearn.predict(rows)).within_bound
    both = columns(rows) | {"instances": json.loads(rows.iloc[:1].to_json(orient="records"))}
    answer = requests.post(url, json=both, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"] == 'the body has both "instances" and "inputs": send rows or columns, not both'
