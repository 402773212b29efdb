"""The Go stream consumer (skl2go-stream) against a real Kafka broker.

100,000 ride events, 1 in 97 malformed, go through the consumer; it is
killed with SIGKILL midway and restarted, and a new model version is
published while events stream. Every valid event must have a prediction
(duplicates allowed, counted), every malformed one must be in the
dead-letter topic with its error, the predictions must equal the HTTP
server's for the same inputs, and the version in the output must switch
with no event lost. Events are produced and read with kafka-python, a
client the project did not write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from loadtest import rides, samples
from topology import free_ports, request, stream, wait_until

NAME = "trip_duration"
EVENTS = 100_000
MALFORMED_EVERY = 97
PHASES = (40_000, 30_000, 30_000)  # before the kill, after the restart, while a version is published


def metric(addr: str, name: str) -> float:
    status, text = request("GET", f"http://{addr}/metrics")
    assert status == 200
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in "{ ")


def publish_copy(models: Path, version: int) -> None:
    """Publish version 1's files as `version`, atomically (rename), as export does."""
    src, staging = models / NAME / "1", models / NAME / f".staging-{version}"
    shutil.copytree(src, staging)
    meta = json.loads((staging / "model.json").read_text())
    meta["version"] = version
    (staging / "model.json").write_text(json.dumps(meta))
    staging.rename(models / NAME / str(version))


@pytest.fixture(scope="module")
def stream_run(kafka_broker, repository, topology, tmp_path_factory):
    """Run the whole scenario once; the tests check its outcome."""
    bootstrap = kafka_broker.bootstrap
    state = tmp_path_factory.mktemp("stream-state")
    models = tmp_path_factory.mktemp("stream-models")
    shutil.copytree(repository.models / NAME / "1", models / NAME / "1")
    instances = samples.instances(samples.held_out_features(repository.build / NAME).head(5000))
    all_rides = rides.make_rides(instances, EVENTS, MALFORMED_EVERY)
    phase1, phase2, phase3 = (all_rides[:PHASES[0]], all_rides[PHASES[0]:PHASES[0] + PHASES[1]],
                              all_rides[PHASES[0] + PHASES[1]:])
    rides.create_topics(bootstrap, ["rides", "predictions", "rides.dlq"], partitions=4)

    metrics = f"127.0.0.1:{free_ports(1)}"
    args = ["--models", str(models), "--input", "rides", "--output", "predictions", "--poll-interval", "200ms",
            "--max-poll-records", "500", "--variant", "stream-test", "--log-format", "text"]
    start = lambda: stream.start(state, NAME, ["--brokers", bootstrap, *args], metrics)  # noqa: E731
    pid_file = state / f"stream-{NAME}.pid"
    log_file = state / "logs" / f"stream-{NAME}.log"
    began = time.monotonic()
    step = lambda what: print(f"[stream test] {time.monotonic() - began:5.1f}s {what}", flush=True)  # noqa: E731
    try:
        rides.produce(bootstrap, "rides", phase1)
        step("phase 1 produced")
        start()
        # SIGKILL midway through phase 1: produced but uncommitted results are redone after the restart.
        wait_until("a third of the events scored", lambda: metric(metrics, "skl2go_stream_consumed_total") >= 15_000,
                   timeout=60, interval=0.02)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        killed_at = rides.count(bootstrap, "predictions")
        step(f"consumer killed at {killed_at} predictions")
        wait_until("the killed consumer gone", lambda: stream.pid(state, NAME) is None, timeout=10)
        rides.produce(bootstrap, "rides", phase2)
        start()
        wait_until("phases 1 and 2 scored", lambda: rides.count(bootstrap, "predictions") + rides.count(bootstrap, "rides.dlq")
                   >= PHASES[0] + PHASES[1], timeout=90, interval=0.2)
        # Phase 3 streams at a steady rate while version 2 is published.
        step("phases 1 and 2 scored")
        producer = threading.Thread(target=rides.produce, args=(bootstrap, "rides", phase3), kwargs={"rate": 10_000})
        producer.start()
        time.sleep(1)
        publish_copy(models, 2)
        producer.join()
        wait_until("version 2 loaded", lambda: "version=2" in log_file.read_text() and "model version loaded" in log_file.read_text(),
                   timeout=30)
        step("phase 3 produced, version 2 loaded")
        valid = sum(r.instance is not None for r in all_rides)
        predictions = rides.read(bootstrap, "predictions", lambda recs: len({r.key for r in recs}) >= valid, timeout=120)
        dead = rides.read(bootstrap, "rides.dlq", lambda recs: len({r.key for r in recs}) >= EVENTS - valid, timeout=60)
        step("topics read")
    finally:
        stream.stop(state)
    yield {"rides": all_rides, "predictions": predictions, "dead": dead, "killed_at": killed_at,
           "phase3": {r.ride_id for r in phase3}, "instances": instances, "topology": topology}


def test_every_valid_event_has_a_prediction_duplicates_counted(stream_run):
    valid = {r.ride_id for r in stream_run["rides"] if r.instance is not None}
    seen = Counter(json.loads(r.value)["ride_id"] for r in stream_run["predictions"])
    missing = valid - set(seen)
    assert not missing, f"{len(missing)} valid events have no prediction, e.g. {sorted(missing)[:5]}"
    assert set(seen) <= valid, f"predictions for events that are not valid: {sorted(set(seen) - valid)[:5]}"
    duplicates = sum(n - 1 for n in seen.values())
    print(f"\n{len(valid)} valid events, {len(stream_run['predictions'])} prediction records, {duplicates} duplicates "
          f"(redone after the SIGKILL at {stream_run['killed_at']} records)")
    for r in stream_run["predictions"]:
        body = json.loads(r.value)
        assert r.key.decode() == body["ride_id"]
        assert body["model"] == NAME and body["variant"] == "stream-test" and body["version"] in (1, 2)


def test_every_malformed_event_is_dead_lettered_with_its_error(stream_run):
    malformed = {r.ride_id: r for r in stream_run["rides"] if r.instance is None}
    assert len(malformed) > 1000
    found = {}
    for record in stream_run["dead"]:
        ride = malformed.get(record.key.decode())
        assert ride is not None, f"dead letter {record.key} was a valid event"
        headers = {k: v.decode() for k, v in record.headers}
        assert record.value == ride.value, "the dead letter must carry the original bytes"
        assert headers["skl2go-error-code"] == "invalid" and headers["skl2go-model"] == NAME
        assert rides.MALFORMED[ride.kind][1] in headers["skl2go-error"], (ride.kind, headers["skl2go-error"])
        assert headers["skl2go-source"].startswith("rides/")
        found[ride.ride_id] = ride.kind
    missing = set(malformed) - set(found)
    assert not missing, f"{len(missing)} malformed events are not dead-lettered, e.g. {sorted(missing)[:5]}"
    assert set(found.values()) == set(rides.MALFORMED), "every kind of damage is exercised"


def test_predictions_equal_the_http_servers(stream_run):
    """The same records sent to the HTTP server (the session topology, serving
    the same version 1 files) give the same numbers."""
    instances = stream_run["instances"]
    url = stream_run["topology"].replicas[0]
    http = []
    for i in range(0, len(instances), 1000):
        status, body = request("POST", f"{url}/v1/models/{NAME}:predict",
                               json.dumps({"instances": instances[i:i + 1000]}).encode())
        assert status == 200, body
        http.extend(body["predictions"])
    streamed = {}
    for r in stream_run["predictions"]:
        body = json.loads(r.value)
        streamed.setdefault(body["ride_id"], body["prediction"])
    compared = 0
    for ride in stream_run["rides"]:
        if ride.instance is not None:
            index = int(ride.ride_id[2:]) % len(instances)
            assert streamed[ride.ride_id] == http[index], (ride.ride_id, streamed[ride.ride_id], http[index])
            compared += 1
    assert compared > 98_000


def test_a_version_published_mid_stream_switches_the_output_without_loss(stream_run):
    phase3 = stream_run["phase3"]
    by_partition = defaultdict(list)
    versions = Counter()
    for r in stream_run["predictions"]:
        body = json.loads(r.value)
        if body["ride_id"] in phase3:
            by_partition[r.partition].append((r.offset, body["version"]))
            versions[body["version"]] += 1
    assert versions[1] > 0 and versions[2] > 0, f"versions in the output during the publish: {dict(versions)}"
    for partition, seq in by_partition.items():
        order = [v for _, v in sorted(seq)]
        first2 = order.index(2)
        assert all(v == 2 for v in order[first2:]), f"partition {partition}: version 1 after version 2"
    # and none lost: covered for phase 3 too by the first test; checked here explicitly
    valid3 = {r.ride_id for r in stream_run["rides"] if r.ride_id in phase3 and r.instance is not None}
    got3 = {json.loads(r.value)["ride_id"] for r in stream_run["predictions"]} & phase3
    assert valid3 == got3
