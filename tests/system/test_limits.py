"""Limits, timeouts, overload and URL checks at both tiers of the real
topology (nginx in front of Go replicas on loopback).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest

from loadtest import bench
from verify.chaos import faults
from topology import request, start

MODEL = "trip_duration"
ROW = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8, "pickup_weekday": 1}
PREDICT = f"/v1/models/{MODEL}:predict"
CLIENT_TIMEOUT = 2  # seconds nginx gives a quiet client


def body(rows: int) -> bytes:
    return json.dumps({"instances": [ROW] * rows}).encode()


@pytest.fixture(scope="module")
def limited(repository, tmp_path_factory):
    topo = start(repository.models, tmp_path_factory.mktemp("run"), SKL2GO_MAX_ROWS="1000",
                 CLIENT_TIMEOUT=f"{CLIENT_TIMEOUT}s")
    yield topo
    topo.down()


def raw(url: str, method: str, path: str, payload: bytes = b"", headers: dict | None = None):
    """Send a request with the path exactly as given (no normalisation);
    return status, headers and parsed JSON body (or None if not JSON)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, payload, {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        parsed = json.loads(data) if resp.getheader("Content-Type", "").startswith("application/json") else None
        return resp.status, resp.headers, parsed
    finally:
        conn.close()


def test_a_body_over_32_mib_is_refused_by_nginx_with_json(limited):
    status, _, answer = raw(limited.url, "POST", PREDICT, b" " * (33 << 20))
    assert status == 413 and answer == {"error": "request body too large: the limit is 32 MiB"}


def test_too_many_rows_are_refused_by_the_replica_through_nginx(limited):
    assert raw(limited.url, "POST", PREDICT, body(1000))[0] == 200
    status, _, answer = raw(limited.url, "POST", PREDICT, body(1001))
    assert status == 413 and answer["error"] == "too many instances: at most 1000 per request"


TRAVERSALS = [
    "/v1/models/..%2f..%2fetc%2fpasswd:predict",
    "/v1/models/%2e%2e:predict",
    "/v1/models/%2E%2E%2F%2E%2E%2Fmetrics",
    "/v1/models/../../etc/passwd",
    "/v1/models/trip_duration/versions/..%2f1:predict",
    "/v1/models/trip_duration/versions/1/../../trip_duration:predict",
    "/v1/models/trip_duration%2f..%2f..%2fmetrics:predict",
    "/v1/models/trip_duration%00:predict",
    "/v1/models/trip_duration/versions/-1:predict",
    "/v1/models/trip_duration/versions/1%2e0:predict",
    "/v1/../metrics",
    "//metrics",
    "/metrics",
    "/metrics?format=json",
    "/%6detrics",
    "/_errors/503",
]


@pytest.mark.parametrize("path", TRAVERSALS)
@pytest.mark.parametrize("tier", ["nginx", "replica"])
def test_paths_that_try_to_leave_the_api_get_a_json_4xx(limited, path, tier):
    url = limited.url if tier == "nginx" else limited.replicas[0]
    status, _, answer = raw(url, "POST", path, body(1))
    assert 400 <= status < 500, (status, answer)
    assert answer and "error" in answer, f"{status} without a JSON error"


def test_metrics_are_served_by_replicas_on_loopback_only(limited):
    assert request("GET", f"{limited.replicas[0]}/metrics")[0] == 200
    assert request("GET", f"{limited.url}/metrics")[0] == 404
    # Every replica listens on 127.0.0.1 (no wildcard socket), see /proc/net/tcp.
    ports = {int(url.rsplit(":", 1)[1]) for url in limited.replicas}
    listeners = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) in ports:  # LISTEN
                listeners.setdefault(int(port, 16), []).append(address)
    assert set(listeners) == ports
    assert all(addresses == ["0100007F"] for addresses in listeners.values()), listeners


def test_slow_clients_are_cut_off_by_nginx_and_others_are_served_meanwhile(limited):
    host, port = limited.url.removeprefix("http://").split(":")
    slow = faults.slow_clients(host, int(port), 50, PREDICT, hold=CLIENT_TIMEOUT * 5)
    slow_body = socket.create_connection((host, int(port)))
    full = body(1)
    slow_body.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(full)}\r\n\r\n".encode() + full[: len(full) // 2])
    try:
        statuses = [raw(limited.url, "POST", PREDICT, full)[0] for _ in range(20)]
        assert statuses == [200] * 20
        # nginx closes (resets: reset_timedout_connection) connections quiet
        # for longer than its client timeouts, headers or body unfinished.
        assert all(faults.closed_by_server(conn, CLIENT_TIMEOUT * 5) for conn in [*slow, slow_body])
    finally:
        for conn in [*slow, slow_body]:
            conn.close()


@pytest.fixture(scope="module")
def tight(repository, tmp_path_factory):
    """Replicas that run one prediction at a time and queue none."""
    topo = start(repository.models, tmp_path_factory.mktemp("run"),
                 SKL2GO_MAX_INFLIGHT="1", SKL2GO_MAX_QUEUE="0")
    yield topo
    topo.down()


def test_overload_gets_a_fast_503_from_the_replica_and_nginx_does_not_retry_it(tight):
    answers: list[tuple[int, str, dict]] = []
    lock = threading.Lock()
    big = body(1000)

    def client():
        for _ in range(15):
            status, headers, answer = raw(tight.url, "POST", PREDICT, big)
            with lock:
                answers.append((status, headers.get("Retry-After", ""), answer))

    for _ in range(10):  # rounds of 12 concurrent clients, until the replicas have been overloaded
        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        if any(status == 503 for status, _, _ in answers):
            break
    overloaded = [(retry, answer) for status, retry, answer in answers if status == 503]
    assert overloaded, "no 503 under overload"
    assert {status for status, _, _ in answers} <= {200, 503}
    for retry, answer in overloaded:  # the replica's own answer, passed through
        assert retry == "1" and answer["error"].startswith("server overloaded: 1 predictions running and 0 waiting")
    # Overload is not a failure: nginx rested no replica, and all serve again.
    errors = (tight.state / "logs" / "nginx-error.log").read_text()
    assert "temporarily disabled" not in errors and "no live upstreams" not in errors
    assert all(raw(tight.url, "POST", PREDICT, body(1))[0] == 200 for _ in range(10))
    assert sum(tight.metric(r, "skl2go_inference_request_failure_total", 'reason="overloaded"')
               for r in (1, 2)) == len(overloaded)


@pytest.fixture(scope="module")
def no_wait(repository, tmp_path_factory):
    """Replicas whose deadline no request through nginx can meet."""
    topo = start(repository.models, tmp_path_factory.mktemp("run"), SKL2GO_QUEUE_TIMEOUT="1us")
    yield topo
    topo.down()


def test_predictions_shed_by_their_deadline_reach_the_client_as_503s_with_retry_after(no_wait, tmp_path):
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text(json.dumps({"instances": [ROW]}) + "\n")
    # 64 requests in flight through nginx for 2 s. Every request reaches a
    # replica more than 1 µs after nginx stamped it (X-Request-Start), so
    # each is refused before its body is read, by the replica.
    load = bench.run_load(no_wait.url, 0, bench.Settings(overload_duration=2, overload_workers=64), bodies, MODEL)
    unavailable = load["unavailable"]
    assert unavailable["count"] > 0 and load["ok"] == 0, load
    assert set(load["errors"]) == {"status 503"} and unavailable["no_retry_after"] == 0, load
    assert sum(no_wait.metric(n, "skl2go_shed_total", 'reason="late"') for n in (1, 2)) == unavailable["count"]
    # Every 503 is a replica's own, passed through once: nginx neither
    # retried one on the other replica (a retried 503 that came back 200
    # would be counted here and not by the client) nor answered its own.
    assert sum(no_wait.metric(n, "skl2go_inference_request_failure_total", 'reason="overloaded"')
               for n in (1, 2)) == unavailable["count"]
    errors = (no_wait.state / "logs" / "nginx-error.log").read_text()
    assert "temporarily disabled" not in errors and "no live upstreams" not in errors


def test_rate_limit_answers_429_in_json_when_switched_on(repository, tmp_path):
    topo = start(repository.models, tmp_path / "run", replicas=1, RATE_LIMIT="5r/s", RATE_BURST="5")
    try:
        answers = [raw(topo.url, "POST", PREDICT, body(1)) for _ in range(30)]
    finally:
        topo.down()
    statuses = [status for status, _, _ in answers]
    assert 200 in statuses and 429 in statuses and set(statuses) == {200, 429}
    refused = next(a for a in answers if a[0] == 429)
    assert refused[1]["Retry-After"] == "1" and "too many requests" in refused[2]["error"]
    # The first requests, within the burst, all pass.
    assert statuses[:5] == [200] * 5


def test_no_rate_limit_by_default(limited):
    statuses = [raw(limited.url, "POST", PREDICT, body(1))[0] for _ in range(60)]
    assert statuses == [200] * 60
    assert "limit_req zone=" not in (limited.state / "nginx.conf").read_text()
