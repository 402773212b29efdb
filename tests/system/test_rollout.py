"""Model roll-out and replica restarts on the real topology (2 Go replicas
behind nginx): new versions are picked up by polling or SIGHUP, broken ones
are refused while the serving one keeps serving, and `make rollout`
restarts the replicas without losing a request.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from verify.chaos import faults
from topology import ROOT, free_ports, processes, ready, request, start, wait_until
from train import export, repository

MODEL = "trip_duration"
POLL = 0.3  # seconds between the replicas' looks at the repository
ROW = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8, "pickup_weekday": 1}
BODY = json.dumps({"instances": [ROW]}).encode()


@pytest.fixture(scope="module")
def models(repository, tmp_path_factory) -> Path:
    """A repository of its own: these tests publish into it."""
    root = tmp_path_factory.mktemp("rollout") / "models"
    shutil.copytree(repository.models / MODEL, root / MODEL)
    return root


@pytest.fixture(scope="module")
def rolling(models, tmp_path_factory):
    topo = start(models, tmp_path_factory.mktemp("run"), SKL2GO_POLL_INTERVAL=f"{POLL}s", SKL2GO_VERSIONS_KEPT="2")
    yield topo
    topo.down()


def predict_version(url: str, version: int | None = None) -> int:
    path = f"/v1/models/{MODEL}" + (f"/versions/{version}" if version else "") + ":predict"
    status, body = request("POST", url + path, BODY)
    assert status == 200, body
    return body["version"]


def log_records(path: Path, msg: str) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return [r for r in records if r["msg"] == msg]


def test_a_published_version_is_served_by_every_replica_and_the_previous_stays_addressable(rolling, models, repository):
    assert rolling.served_versions(MODEL) == [[1], [1]]
    published = export.export(MODEL, repository.build, models)  # the real exporter: temp dir, then rename
    assert published.name == "2"
    wait_until("every replica serving versions 1 and 2", lambda: rolling.served_versions(MODEL) == [[1, 2], [1, 2]])
    assert {predict_version(rolling.url) for _ in range(10)} == {2}
    assert predict_version(rolling.url, 1) == 1  # versions kept: 2
    for replica in range(1, 3):
        assert rolling.metric(replica, "skl2go_model_latest_version", f'model="{MODEL}"') == 2
        assert rolling.metric(replica, "skl2go_model_versions_loaded", f'model="{MODEL}"') == 2


def test_a_corrupt_version_is_refused_once_and_the_serving_one_keeps_serving(rolling, models):
    broken = faults.publish_corrupt(models / MODEL)
    assert broken.name == "3"
    failures = f'model="{MODEL}"'
    wait_until("both replicas to refuse version 3",
               lambda: all(rolling.metric(r, "skl2go_model_load_failures_total", failures) == 1 for r in (1, 2)))
    assert rolling.served_versions(MODEL) == [[1, 2], [1, 2]]
    assert {predict_version(rolling.url) for _ in range(10)} == {2}
    for replica in range(1, 3):
        refusals = log_records(rolling.state / "logs" / f"replica-{replica}.log",
                               "model version refused; the versions serving keep serving")
        assert len(refusals) == 1
        assert refusals[0]["path"] == str(broken) and refusals[0]["level"] == "ERROR"
        assert "ONNX Runtime cannot read the graph" in refusals[0]["err"]
        assert refusals[0]["serving"] == [1, 2]

    # Not retried while its files stay the same: several polls later, still one failure each.
    time.sleep(5 * POLL)
    assert [rolling.metric(r, "skl2go_model_load_failures_total", failures) for r in (1, 2)] == [1, 1]
    shutil.rmtree(broken)


def test_sighup_reloads_a_replica_that_does_not_poll(repository, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(repository.models / MODEL, models / MODEL)
    port = free_ports(1)
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([str(ROOT / "serve-go/bin/skl2go-server"), "--models", str(models),
                               "--addr", f"127.0.0.1:{port}", "--poll-interval", "0"], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until("the server to be ready", lambda: ready(url) if server.poll() is None else pytest.fail("the server exited"))
        export.export(MODEL, repository.build, models)
        assert predict_version(url) == 1  # no polling: nothing happens by itself
        server.send_signal(signal.SIGHUP)
        wait_until("version 2 after SIGHUP", lambda: predict_version(url) == 2, timeout=20)
        assert server.poll() is None  # SIGHUP reloads, it does not end the process
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    reloads = log_records(tmp_path / "server.log", "model repository reloaded")
    assert reloads and reloads[0]["signal"] == "hangup" and reloads[0]["loaded"] == 1


class Load:
    """Threads posting predictions through nginx until stopped, counting
    answers by status (and version) and connection errors.

    A request sent on a kept-alive connection that nginx closed while it was
    idle (what an nginx reload does to its old workers' idle connections)
    never reached nginx: like Go's and urllib3's clients, it is sent once
    more on a new connection, and counted in `resent` (by phase), so a test
    can require that none happened."""

    def __init__(self, url: str, threads: int = 4):
        self.host, self.port = url.removeprefix("http://").split(":")
        self.counts: collections.Counter = collections.Counter()
        self.resent: collections.Counter = collections.Counter()
        self.phase = ""
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, int(self.port), timeout=30)

    def send(self, conn: http.client.HTTPConnection) -> tuple:
        conn.request("POST", f"/v1/models/{MODEL}:predict", BODY, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return (resp.status, json.loads(data)["version"]) if resp.status == 200 else (resp.status, data[:100])

    def run(self):
        conn, reused = self.connect(), False
        for _ in range(1_000_000):  # bounded; stop() ends it long before
            if self.stopping.is_set():
                break
            try:
                try:
                    key = self.send(conn)
                except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                    if not reused:
                        raise
                    with self.lock:
                        self.resent[self.phase] += 1
                    conn.close()
                    conn = self.connect()
                    key = self.send(conn)
                reused = True
            except (OSError, http.client.HTTPException) as err:
                key = ("connection error", repr(err))
                conn.close()
                conn, reused = self.connect(), False
            with self.lock:
                self.counts[key] += 1
            time.sleep(0.002)
        conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=60)


def test_rollout_restarts_every_replica_without_losing_a_request(rolling):
    before = rolling.pids()
    with Load(rolling.url) as load:
        time.sleep(0.5)
        done = rolling.rollout()
        time.sleep(0.5)
    assert done.returncode == 0, done.stderr
    after = rolling.pids()
    assert all(a != b for a, b in zip(before, after)), f"pids {before} -> {after}"
    answers = dict(load.counts)
    assert sum(answers.values()) > 100, answers
    assert all(key[0] == 200 for key in answers), answers  # not one error or lost request
    assert not load.resent, load.resent  # nor a kept-alive connection closed under a client
    assert "rollout done: 2 replica(s) restarted one at a time" in done.stdout


def test_rollout_touches_nothing_when_the_repository_would_not_load(rolling, models):
    meta_file = repository.latest_version(models, MODEL) / repository.METADATA_FILE
    good = meta_file.read_text()
    meta = json.loads(good)
    meta["inputs"][2]["type"] = "tensor(double)"  # disagrees with the graph
    before = rolling.pids()
    try:
        meta_file.write_text(json.dumps(meta))
        done = rolling.rollout()
    finally:
        meta_file.write_text(good)
    assert done.returncode != 0
    assert "no replica restarted" in done.stderr and "tensor(double)" in done.stderr
    assert rolling.pids() == before
    assert all(os.path.exists(f"/proc/{pid}") for pid in before)


@pytest.mark.parametrize("addr", ["0.0.0.0:{port}", ":{port}"])
def test_a_replica_refuses_to_listen_beyond_loopback(repository, addr):
    done = subprocess.run([str(ROOT / "serve-go/bin/skl2go-server"), "--models", str(repository.models),
                           "--addr", addr.format(port=free_ports(1))], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "not loopback" in done.stderr and "--allow-non-loopback" in done.stderr


# --- make up converges (issue 19): under load, never a failed request ---------

def test_make_up_converges_under_load_without_a_failed_request(models, tmp_path):
    topo = start(models, tmp_path / "run", SKL2GO_POLL_INTERVAL=f"{POLL}s")
    try:
        master = topo.nginx_pid()
        with Load(topo.url) as load:
            time.sleep(0.5)
            before = topo.pids()
            load.phase = "same settings"
            same = topo.up()  # nothing changes
            assert same.returncode == 0, same.stderr
            assert "nothing changed" in same.stdout and topo.pids() == before

            load.phase = "other flags"
            flags = topo.up(SKL2GO_LOG_LEVEL="warn")  # every replica restarted with them, one at a time
            assert flags.returncode == 0, flags.stderr
            replaced = topo.pids()
            assert all(p not in before for p in replaced) and len(replaced) == 2
            assert flags.stdout.count("restarted with the new settings") == 2

            load.phase = "a replica died"
            os.kill(replaced[1], signal.SIGKILL)  # only it is started again
            wait_until("the killed replica to be gone", lambda: not processes.running(replaced[1]), timeout=10)
            again = topo.up()
            assert again.returncode == 0, again.stderr
            assert "replica 2 was not running" in again.stdout
            after = topo.pids()
            assert after[0] == replaced[0] and after[1] != replaced[1]

            load.phase = "scale 2 -> 3 -> 2"
            more = topo.up(REPLICAS="3")  # one more; the two running are kept
            assert more.returncode == 0, more.stderr
            assert len(topo.replicas) == 3 and topo.pids()[:2] == after
            fewer = topo.up(REPLICAS="2")  # the third retired
            assert fewer.returncode == 0, fewer.stderr
            assert len(topo.replicas) == 2 and topo.pids() == after
            time.sleep(0.5)
        assert topo.nginx_pid() == master  # reloaded, never restarted
        answers = dict(load.counts)
        assert sum(answers.values()) > 100, answers
        assert all(key[0] == 200 for key in answers), answers  # not one error or lost request
        # Only the reloads of a scale change close kept-alive client connections.
        assert set(load.resent) <= {"scale 2 -> 3 -> 2"}, load.resent
        assert all(topo.metric(r, "skl2go_inference_request_success_total") > 0 for r in (1, 2))
    finally:
        topo.down()
