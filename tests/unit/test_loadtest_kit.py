"""The load-test kit without a server: request bodies are held-out rows, the
sklearn baseline (Flask's test client) answers like sklearn, and every
answer Locust gets is checked.
"""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest

from loadtest import baseline, samples


@pytest.fixture(scope="module")
def held_out(repository) -> pd.DataFrame:
    return samples.held_out_features(repository.build / "trip_duration")


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
