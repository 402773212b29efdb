"""API keys and TLS at the edge (docs/security.md), through nginx: one
stack with AUTH, TLS and a per-key rate limit, started once for the module."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import requests

from conftest import REPLICAS
from topology import keys, metric, running
from train import agreement, data

MODEL = "trip_duration"
PREDICT = f"/v1/models/{MODEL}:predict"


@pytest.fixture(scope="module")
def edge(repository, tmp_path_factory):
    state = tmp_path_factory.mktemp("run")
    key_file = state.parent / f"{state.name}-keys"
    clients = {"alice": keys.add(key_file, "alice", "predict"), "reader": keys.add(key_file, "reader", "read"),
               "sdk": keys.add(key_file, "sdk", "predict,read"), "feeder": keys.add(key_file, "feeder", "write"),
               "flood": keys.add(key_file, "flood", "predict"), "gone": keys.add(key_file, "gone", "predict,read")}
    with running(repository.models, state, replicas=REPLICAS, AUTH=str(key_file), TLS="1",
                 RATE_LIMIT="40r/s", RATE_BURST="40", INFERENCE_LOG="1") as topology:
        port = int(topology.env["PORT"]) + 1
        yield {"topology": topology, "keys": clients, "file": key_file, "https": f"https://127.0.0.1:{port}",
               "cert": str(state / "tls" / "cert.pem"), "body": body(repository)}


def body(repository) -> bytes:
    rows = pd.read_parquet(repository.build / MODEL / "validation.parquet").drop(columns=[data.TARGET]).iloc[:2]
    return json.dumps({"instances": rows.to_dict(orient="records")}).encode()


def call(edge, method: str, path: str, key: str | None = None, data: bytes | None = None,
         session: requests.Session | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return (session or requests).request(method, edge["https"] + path, data=data, headers=headers,
                                         verify=edge["cert"], timeout=30)


def refused(r: requests.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()["error"]


def test_good_keys_pass_for_their_scope(edge):
    r = call(edge, "POST", PREDICT, edge["keys"]["alice"], edge["body"])
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2
    assert call(edge, "GET", f"/v1/models/{MODEL}", edge["keys"]["reader"]).status_code == 200
    assert call(edge, "GET", f"/v2/models/{MODEL}", edge["keys"]["reader"]).status_code == 200


def test_no_wrong_scope_and_query_keys_are_refused(edge):
    alice, reader = edge["keys"]["alice"], edge["keys"]["reader"]
    assert "Authorization: Bearer" in refused(call(edge, "POST", PREDICT, None, edge["body"]), 401)
    refused(call(edge, "POST", PREDICT, alice[:-2] + "xx", edge["body"]), 401)
    basic = requests.get(edge["https"] + "/v1/models", headers={"Authorization": f"Basic {alice}"},
                         verify=edge["cert"], timeout=30)
    refused(basic, 401)
    refused(call(edge, "POST", PREDICT, reader, edge["body"]), 403)  # read only
    refused(call(edge, "GET", f"/v1/models/{MODEL}", alice), 403)  # predict only
    refused(call(edge, "POST", f"/v2/models/{MODEL}/infer", reader, b"{}"), 403)
    # A key in the URL is refused, even alongside a good header.
    refused(call(edge, "POST", f"{PREDICT}?api_key={alice}", alice, edge["body"]), 401)
    refused(call(edge, "GET", f"/v1/models?access_token={reader}"), 401)


def test_health_is_open_and_internal_routes_are_not_proxied(edge):
    for path in ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"]:
        assert call(edge, "GET", path).status_code == 200, path
    for path in ["/metrics", "/auth"]:
        assert call(edge, "GET", path, edge["keys"]["reader"]).status_code == 404, path


def test_revoked_key_is_refused_at_once(edge):
    gone = edge["keys"]["gone"]
    assert call(edge, "GET", "/v1/models", gone).status_code == 200
    keys.revoke(edge["file"], "gone")
    refused(call(edge, "GET", "/v1/models", gone), 401)


def test_answers_show_no_paths_or_training_data(edge, repository):
    reader = edge["keys"]["reader"]
    answers = [call(edge, "GET", f"/v1/models/{MODEL}", reader), call(edge, "GET", f"/v2/models/{MODEL}", reader),
               call(edge, "GET", f"/v1/models/{MODEL}/versions/1", reader), call(edge, "GET", "/v1/models/nope", reader),
               call(edge, "POST", PREDICT, edge["keys"]["alice"], b'{"instances": [{"x": 1}]}'),
               call(edge, "POST", PREDICT, edge["keys"]["alice"], b"not json")]
    meta = answers[0].json()
    assert {"name", "version", "task", "inputs", "outputs"} <= set(meta)
    assert not {"files", "data", "examples", "metrics", "environment"} & set(meta)
    for r in answers:
        for secret in [str(repository.models), str(repository.build), str(repository.trips), ".onnx", ".joblib",
                       ".parquet", "/tmp", "/home", "/work", "goroutine", "Traceback"]:
            assert secret not in r.text, (r.request.url, secret, r.text)


def test_client_id_logged_and_counted_never_the_key(edge):
    topology, alice = edge["topology"], edge["keys"]["alice"]
    assert call(edge, "POST", PREDICT, alice, edge["body"]).status_code == 200
    time.sleep(1.5)  # nginx flushes its access log buffer every second
    log = (topology.state / "logs" / "nginx-access.log").read_text()
    assert re.search(r'"POST /v1/models/trip_duration:predict HTTP/[12.0]+" 200 .* client=alice$', log, re.M), log[-2000:]
    assert sum(metric(f"{r}/metrics", "skl2go_client_requests_total", 'client="alice"') for r in topology.replicas) >= 1
    # Also the refused requests with a key in their URL: nginx logs the path
    # without its query string.
    assert call(edge, "GET", f"/v1/models?api_key={alice}").status_code == 401
    time.sleep(1.5)
    logs = [p.read_text() for p in (topology.state / "logs").iterdir()]
    assert any('"GET /v1/models HTTP/' in text for text in logs)
    for key in edge["keys"].values():
        assert all(key not in text for text in logs)


def test_rate_limit_is_per_key(edge):
    flood, alice = edge["keys"]["flood"], edge["keys"]["alice"]
    with requests.Session() as s:
        statuses = [call(edge, "GET", "/v1/models/x:predict", flood, session=s).status_code for _ in range(120)]
    assert 429 in statuses, statuses
    assert call(edge, "POST", PREDICT, alice, edge["body"]).status_code == 200


def test_good_key_under_load_while_keys_change(edge, capsys):
    alice, failures, done = edge["keys"]["alice"], [], []
    stop = threading.Event()

    def client():
        with requests.Session() as s:
            while not stop.is_set() and len(done) < 400:
                r = call(edge, "POST", PREDICT, alice, edge["body"], session=s)
                (done if r.status_code == 200 else failures).append(r.status_code)
                time.sleep(0.06)  # 2 clients stay under the per-key rate limit (40 r/s)

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            time.sleep(0.3)
            new = keys.add(edge["file"], f"new{i}", "predict")
            assert call(edge, "POST", PREDICT, new, edge["body"]).status_code == 200
            keys.revoke(edge["file"], f"new{i}")
            assert call(edge, "POST", PREDICT, new, edge["body"]).status_code == 401
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures
    assert len(done) >= 40
    with capsys.disabled():
        print(f"\ngood key: {len(done)} requests, 0 failed, while 10 keys were added and revoked")


def test_tls_clients_and_plain_http(edge):
    https, cert = edge["https"], edge["cert"]
    reader = edge["keys"]["reader"]
    # curl: HTTP/2 and HTTP/1.1 over TLS 1.2+; TLS 1.1 refused.
    for flag, version in [("--http2", "2"), ("--http1.1", "1.1")]:
        out = subprocess.run(["curl", "-sS", flag, "--cacert", cert, "-H", f"Authorization: Bearer {reader}",
                              "-o", "/dev/null", "-w", "%{http_code} %{http_version}", f"{https}/v1/models"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout == f"200 {version}", (out.stdout, out.stderr)
    old = subprocess.run(["curl", "-sS", "--cacert", cert, "--tlsv1.0", "--tls-max", "1.1", f"{https}/healthz"],
                         capture_output=True, text=True, timeout=30)
    assert old.returncode != 0
    # Plain HTTP: health checks answer, everything else is redirected to HTTPS.
    plain = edge["topology"].url
    assert requests.get(f"{plain}/readyz", timeout=10).status_code == 200
    r = requests.post(f"{plain}{PREDICT}", data=edge["body"], allow_redirects=False, timeout=10)
    assert r.status_code == 308 and r.headers["Location"].startswith("https://127.0.0.1:")
    # urllib with the certificate as the only trust anchor.
    ctx = ssl.create_default_context(cafile=cert)
    req = urllib.request.Request(f"{https}/v1/models", headers={"Authorization": f"Bearer {reader}"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.URLError):  # and without it the self-signed one is refused
        urllib.request.urlopen(f"{https}/healthz", context=ssl.create_default_context(), timeout=10)
    # Triton's client with ssl.
    import tritonclient.http as triton
    client = triton.InferenceServerClient(https.removeprefix("https://"), ssl=True, ssl_options={"ca_certs": cert})
    try:
        assert client.is_server_ready()
        meta = client.get_model_metadata(MODEL, headers={"Authorization": f"Bearer {reader}"})
        assert meta["name"] == MODEL and meta["inputs"]
    finally:
        client.close()


def test_kserve_sdk_over_tls_with_a_key(edge, repository):
    """KServe's SDK the way its users call it on a secured edge: RESTConfig's
    verify (the certificate) and auth (the key), every answer as without them."""
    from test_kserve_sdk import REGRESSOR, held_out, run_sdk
    answers = run_sdk(repository, edge["https"], cert=edge["cert"], key=edge["keys"]["sdk"])
    assert answers["server_live"] and answers["server_ready"]
    rows, sklearn = held_out(repository, REGRESSOR)
    for form in ("json", "binary"):
        got = answers["models"][REGRESSOR][form]["outputs"]["variable"]["data"]
        assert agreement.regression(np.array(got).ravel(), sklearn.predict(rows)).within_bound
    with pytest.raises(AssertionError, match="401"):  # the same SDK without the key is refused
        run_sdk(repository, edge["https"], cert=edge["cert"])


def test_ground_truth_takes_a_write_key(edge):
    """With keys on, ground truth needs a key with the write scope (checked
    at nginx and, for this endpoint, again by the replica); no actuals token."""
    answer = call(edge, "POST", PREDICT, edge["keys"]["alice"], edge["body"])
    assert answer.status_code == 200
    request_id = answer.headers["X-Request-ID"]
    truth = json.dumps({"actuals": [{"request_id": request_id, "row": 0, "actual": 12.5}]}).encode()
    path = f"/v1/models/{MODEL}/actuals"
    refused(call(edge, "POST", path, None, truth), 401)
    refused(call(edge, "POST", path, edge["keys"]["alice"], truth), 403)  # predict only
    r = call(edge, "POST", path, edge["keys"]["feeder"], truth)
    assert r.status_code == 200 and r.json() == {"accepted": 1}, r.text
    logged = []
    deadline = time.monotonic() + 15
    while not logged and time.monotonic() < deadline:
        time.sleep(0.5)
        logged = [line for f in (edge["topology"].state / "inference").rglob("*.jsonl") for line in f.read_text().splitlines()
                  if '"org.skl2go.actual"' in line and request_id in line]
    assert logged, "the ground truth never reached the inference log"
    assert all(key not in line for key in edge["keys"].values() for line in logged)


def test_up_twice_changes_nothing(edge):
    done = edge["topology"].up()
    assert done.returncode == 0, done.stderr
    assert "nothing changed" in done.stdout, done.stdout
