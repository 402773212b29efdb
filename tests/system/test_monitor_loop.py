"""The retraining loop (monitor/loop.py): no drift → nothing trained; a
shifted month → a challenger staged beside production, while the replicas
keep answering from the champion; a failed step leaves production as it was."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timedelta, timezone

import joblib
import pytest
import requests

import conftest
import inference_log
from monitor import loop as monitor_loop
from train import repository as repo

pytestmark = pytest.mark.skipif(not monitor_loop.MONITOR_PY.exists(), reason="no .venv-monitor")
ROWS = 3000


def fingerprint(models) -> dict:
    return {str(p.relative_to(models)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(models.rglob("*")) if p.is_file()}


def traffic(url: str, stop: threading.Event, seen: dict) -> None:
    body = {"instances": [{"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8,
                           "pickup_weekday": 1}]}
    while not stop.is_set() and seen["sent"] < 5000:
        seen["sent"] += 1
        try:
            r = requests.post(f"{url}/v1/models/trip_duration:predict", json=body, timeout=10)
            seen.setdefault("versions", set()).add(r.json().get("version"))
            seen["failed"] += r.status_code != 200
        except requests.RequestException:
            seen["failed"] += 1
        stop.wait(0.05)


def test_loop_stages_a_challenger_on_drift_and_leaves_production_alone(repository, topology, tmp_path):
    model = joblib.load(repository.models / "trip_duration" / "1" / "pipeline.joblib")
    X, y = inference_log.unseen_training_rows(repository.trips)
    X, y = X.iloc[:ROWS], y.iloc[:ROWS]
    before = fingerprint(repository.models)
    now = datetime.now(timezone.utc)

    calm = tmp_path / "calm"
    inference_log.write_log(calm, "replica-1", X, model.predict(X), "trip_duration", 1, now - timedelta(minutes=5),
                            actuals=y.to_numpy())
    inference_log.shifted_file(calm / "incoming" / "green_tripdata_2021-03.parquet", 20_000, conftest.SEED)
    result = monitor_loop.Loop("trip_duration", calm, repository.models, calm / "incoming").cycle()
    assert result["retrained"] is False and result["summary"]["drifted_inputs"] == []
    assert not (calm / "challengers").exists()

    moved = tmp_path / "moved"
    Xs, ys = inference_log.shift(X, y)
    inference_log.write_log(moved, "replica-1", Xs, model.predict(Xs), "trip_duration", 1,
                            now - timedelta(minutes=5), actuals=ys.to_numpy())
    incoming = moved / "incoming"
    inference_log.shifted_file(incoming / "green_tripdata_2021-03.parquet", 20_000, conftest.SEED)
    stop, seen = threading.Event(), {"sent": 0, "failed": 0}
    sender = threading.Thread(target=traffic, args=(topology.url, stop, seen))
    sender.start()
    try:
        loop = monitor_loop.Loop("trip_duration", moved, repository.models, incoming)
        result = loop.cycle()
    finally:
        stop.set()
        sender.join(30)
    assert result["retrained"] is True, result
    assert set(result["summary"]["drifted_inputs"]) == {"pickup_hour", "trip_distance"}
    assert result["challenger"] == 2
    staged = moved / "challengers" / "trip_duration" / "2"
    meta = repo.load_metadata(staged)
    assert meta["version"] == 2 and meta["data"]["files"][0]["path"].endswith("green_tripdata_2021-03.parquet")
    assert (staged / "reference.parquet").is_file() and meta["parity"]["max_rel_error"] <= 1e-4
    # Production: the same files, the replicas still on the champion, nothing failed.
    assert fingerprint(repository.models) == before
    assert seen["sent"] > 0 and seen["failed"] == 0 and seen["versions"] == {1}
    steps = [(e["step"], e["status"]) for e in map(json.loads, (moved / "monitor-loop" / "loop.jsonl").read_text()
                                                   .splitlines())]
    assert steps == [("report", "ok"), ("decide", "retrain"), ("fit", "ok"), ("export", "ok"),
                     ("register", "challenger")]

    # The same file again is not news; a broken one fails at fit, and nothing moves.
    (incoming / "green_tripdata_2021-04.parquet").write_text("not parquet")
    result = loop.cycle()
    assert result == {"retrained": False, "failed": "fit"}
    assert repo.versions(moved / "challengers" / "trip_duration") == [2]
    assert fingerprint(repository.models) == before
    last = json.loads((moved / "monitor-loop" / "loop.jsonl").read_text().splitlines()[-1])
    assert (last["step"], last["failed_step"], last["production"]) == ("cycle", "fit", "untouched")
