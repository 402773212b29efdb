"""The whole loop on the real topology: replicas with the inference log on
(`make up INFERENCE_LOG=1`), traffic through nginx from the training
distribution (no drift), then from a shifted month (drift, a challenger
staged), with production answering from the champion and no request failed."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest
import requests

import conftest
import inference_log
from monitor import loop as monitor_loop
from topology import running, wait_until
from train import repository as repo

pytestmark = pytest.mark.skipif(not monitor_loop.MONITOR_PY.exists(), reason="no .venv-monitor")
ROWS, BATCH = 3000, 50


def send(url: str, X, seen: dict) -> None:
    """X's rows through nginx, BATCH per request; counts failures and the versions that answered."""
    rows = json.loads(X.to_json(orient="records"))
    for lo in range(0, len(rows), BATCH):
        seen["sent"] += 1
        try:
            r = requests.post(f"{url}/v1/models/trip_duration:predict", json={"instances": rows[lo:lo + BATCH]},
                              timeout=30)
            seen["failed"] += r.status_code != 200
            seen["versions"].add(r.json().get("version"))
        except requests.RequestException:
            seen["failed"] += 1


def logged_rows(state) -> int:
    n = 0
    for f in (state / "inference").glob("replica-*/inference-*.jsonl"):
        for line in f.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("type") == "org.skl2go.inference":
                n += len(record["data"]["outputs"]["predictions"])
    return n


def test_no_drift_then_shifted_month_stages_a_challenger_while_the_champion_serves(repository, tmp_path):
    X, y = inference_log.unseen_training_rows(repository.trips)
    X = X.iloc[:ROWS]
    state = tmp_path / "run"
    seen = {"sent": 0, "failed": 0, "versions": set()}
    with running(repository.models, state, replicas=conftest.REPLICAS, INFERENCE_LOG="1") as topology:
        start = datetime.now(timezone.utc).isoformat()
        send(topology.url, X, seen)
        wait_until("the training traffic in the log", lambda: logged_rows(state) >= ROWS, timeout=30)
        calm = monitor_loop.Loop("trip_duration", state, repository.models, state / "incoming", since=start).cycle()
        assert calm["retrained"] is False, calm
        assert calm["summary"]["window"]["rows"] == ROWS and calm["summary"]["drifted_inputs"] == []
        assert not calm["summary"]["prediction"]["drifted"]

        shifted_start = datetime.now(timezone.utc).isoformat()
        Xs, _ = inference_log.shift(X)
        send(topology.url, Xs, seen)
        wait_until("the shifted traffic in the log", lambda: logged_rows(state) >= 2 * ROWS, timeout=30)
        inference_log.shifted_file(state / "incoming" / "green_tripdata_2021-03.parquet", 20_000, conftest.SEED)
        stop = threading.Event()
        during = {"sent": 0, "failed": 0, "versions": set()}

        def keep_sending():
            while not stop.is_set() and during["sent"] < 2000:
                send(topology.url, X.iloc[:1], during)
                stop.wait(0.05)
        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            moved = monitor_loop.Loop("trip_duration", state, repository.models, state / "incoming",
                                      since=shifted_start).cycle()
        finally:
            stop.set()
            sender.join(30)
    assert moved["retrained"] is True, moved
    assert moved["summary"]["window"]["rows"] == ROWS
    assert set(moved["summary"]["drifted_inputs"]) == {"pickup_hour", "trip_distance"}
    assert moved["summary"]["prediction"]["drifted"]
    assert moved["challenger"] == 2 and repo.versions(state / "challengers" / "trip_duration") == [2]
    assert repo.versions(repository.models / "trip_duration") == [1]
    assert seen["failed"] == 0 and during["failed"] == 0 and during["sent"] > 0
    assert seen["versions"] == during["versions"] == {1}
