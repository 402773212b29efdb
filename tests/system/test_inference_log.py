"""The inference log on the real topology (docs/inference-log.md): `make up
INFERENCE_LOG=1 ACTUALS_TOKEN=…`, predictions and ground truth through
nginx, the records read back from each replica's files and joined on the
request id."""

from __future__ import annotations

import json
import math
import os
import signal
import uuid
from pathlib import Path

import pandas as pd
import pytest
import requests

from conftest import REPLICAS
from topology import running, wait_until

MODEL, CLASSIFIER = "trip_duration", "tip_given"
TOKEN = "actuals-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def logged(repository, tmp_path_factory):
    state = tmp_path_factory.mktemp("run")
    token_file = state.parent / f"{state.name}-actuals-token"
    token_file.write_text(TOKEN + "\n")
    with running(repository.models, state, replicas=REPLICAS, INFERENCE_LOG="1", ACTUALS_TOKEN=str(token_file)) as topology:
        yield topology


def rows(repository, name: str, n: int) -> list[dict]:
    """The first n held-out rows, the model's inputs only."""
    inputs = [i["name"] for i in json.loads((repository.models / name / "1" / "model.json").read_text())["inputs"]]
    frame = pd.read_parquet(repository.build / name / "validation.parquet")[inputs].iloc[:n]
    return json.loads(frame.to_json(orient="records"))


def records(state: Path) -> list[dict]:
    out = []
    for f in sorted((state / "inference").glob("replica-*/inference-*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def test_predictions_and_ground_truth_are_logged_and_join_on_the_request_id(logged, repository):
    url = logged.url
    regress, classify = rows(repository, MODEL, 3), rows(repository, CLASSIFIER, 2)
    sent = {}  # request id -> (model, instances, answer)
    for i in range(6):  # both replicas answer some
        headers = {"X-Request-Id": f"client-{i}"} if i % 2 else {}
        r = requests.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": regress}, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        rid = r.headers["X-Request-Id"]
        assert rid == headers.get("X-Request-Id", rid) and "," not in rid  # the client's, once; else nginx's
        sent[rid] = (MODEL, regress, r.json()["predictions"])
    r = requests.post(f"{url}/v1/models/{CLASSIFIER}:predict", json={"instances": classify},
                      headers={"X-Request-Id": "tip-1"}, timeout=30)
    assert r.status_code == 200, r.text
    sent["tip-1"] = (CLASSIFIER, classify, r.json()["predictions"])
    v2 = {"inputs": [{"name": k, "datatype": "INT64" if isinstance(regress[0][k], int) else "FP32",
                      "shape": [len(regress), 1], "data": [row[k] for row in regress]} for k in regress[0]]}
    r = requests.post(f"{url}/v2/models/{MODEL}/infer", json=v2, headers={"X-Request-Id": "v2-1"}, timeout=30)
    assert r.status_code == 200, r.text
    sent["v2-1"] = (MODEL, regress, r.json()["outputs"][0]["data"])
    bad = requests.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": regress},
                        headers={"X-Request-Id": "x" * 129}, timeout=30)
    assert bad.status_code == 400 and "X-Request-Id" in bad.json()["error"]

    # Ground truth, later: by request id and row, and by a key of the caller's.
    truth = [{"request_id": rid, "row": row, "actual": 10.0 + row} for rid in sent if sent[rid][0] == MODEL for row in (0, 1)]
    truth.append({"key": "trip-42", "actual": 7.5})
    actuals = f"{url}/v1/models/{MODEL}/actuals"
    assert requests.post(actuals, json={"actuals": truth}, timeout=30).status_code == 401
    assert requests.post(actuals, json={"actuals": truth}, headers={"Authorization": "Bearer nope"}, timeout=30).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    bad = requests.post(actuals, json={"actuals": [{"request_id": "r", "actual": "x"}]}, headers=bearer, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"].startswith("actuals[0].actual: must be a finite number")
    ok = requests.post(actuals, json={"actuals": truth}, headers=bearer, timeout=30)
    assert ok.status_code == 200 and ok.json() == {"accepted": len(truth)}, ok.text

    # The files, flushed within a second: every prediction and every actual.
    want = len(sent) + len(truth)
    logs = wait_until("the inference log to be written", lambda: (got := records(logged.state)) and len(got) >= want and got,
                      timeout=20)
    assert len(logs) == want
    assert {r["source"] for r in logs} <= {f"skl2go/replica-{n}" for n in range(1, REPLICAS + 1)}
    assert len({r["id"] for r in logs}) == len(logs)
    for r in logs:
        assert r["specversion"] == "1.0" and r["datacontenttype"] == "application/json" and r["time"].endswith("Z")
    predictions = {r["requestid"]: r for r in logs if r["type"] == "org.skl2go.inference"}
    assert set(predictions) == set(sent)
    for rid, (model, instances, answer) in sent.items():
        rec = predictions[rid]
        assert rec["model"] == model and rec["version"] == 1 and rec["latencyms"] > 0 and "variant" not in rec
        for name, values in rec["data"]["inputs"].items():
            assert all(math.isclose(v, row[name], rel_tol=1e-6) for v, row in zip(values, instances, strict=True))
        outputs = rec["data"]["outputs"]
        if model == CLASSIFIER:
            assert outputs["predictions"] == [p["label"] for p in answer]
            flat = [q for p in answer for q in p["probabilities"]]
            assert [q for p in outputs["probabilities"] for q in p] == pytest.approx(flat, rel=1e-6)
        else:
            assert outputs["predictions"] == pytest.approx(answer, rel=1e-6) and "probabilities" not in outputs

    # Joined: each actual finds its prediction's row.
    actual = [r for r in logs if r["type"] == "org.skl2go.actual"]
    assert len(actual) == len(truth) and all(r["model"] == MODEL for r in actual)
    for r in actual:
        d = r["data"]
        if d["key"] == "trip-42":
            assert d["requestid"] is None and d["actual"] == 7.5
            continue
        assert r["requestid"] == d["requestid"] and d["actual"] == 10.0 + d["row"]
        prediction = predictions[d["requestid"]]["data"]["outputs"]["predictions"][d["row"]]
        assert prediction == pytest.approx(sent[d["requestid"]][2][d["row"]], rel=1e-6)

    written = sum(logged.metric(n, "skl2go_inference_log_written_total") for n in range(1, REPLICAS + 1))
    dropped = sum(logged.metric(n, "skl2go_inference_log_dropped_total") for n in range(1, REPLICAS + 1))
    assert written == want and dropped == 0


def test_a_replica_stopped_writes_out_what_it_logged(logged, repository):
    """SIGTERM: the replica answers what it has, then writes its queue out
    before it exits (the last second's records are not lost)."""
    replica, pid = logged.replicas[0], logged.pids()[0]
    before = len([r for r in records(logged.state) if r["source"] == "skl2go/replica-1"])
    regress = rows(repository, MODEL, 1)
    with requests.Session() as session:
        for i in range(50):
            r = session.post(f"{replica}/v1/models/{MODEL}:predict", json={"instances": regress},
                             headers={"X-Request-Id": f"last-{i}"}, timeout=30)
            assert r.status_code == 200, r.text
    os.kill(pid, signal.SIGTERM)
    wait_until("replica 1 to exit", lambda: not Path(f"/proc/{pid}").exists() or
               Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", timeout=30)
    after = [r for r in records(logged.state) if r["source"] == "skl2go/replica-1"]
    assert len(after) == before + 50
    assert {f"last-{i}" for i in range(50)} <= {r.get("requestid") for r in after}
