"""skl2go-stream following the real MLflow registry's alias (--registry), as
skl2go-server does: the champion alias moved while events stream switches
the version in the output, with no event lost and no version 1 after
version 2 on a partition.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, defaultdict

import pytest

from loadtest import rides, samples
from topology import free_ports, stream, wait_until
from train import tracking

NAME = "stream_alias"  # registered by this module only: the registry lives for the session
EVENTS = 20_000
MALFORMED_EVERY = 101
TOPICS = ("rides-alias", "predictions-alias", "rides-alias.dlq")


@pytest.fixture(scope="module")
def alias_run(kafka_broker, mlflow_registry, register, repository, tmp_path_factory):
    url, _ = mlflow_registry
    assert (register(NAME, "linear", True), register(NAME, "ridge", False)) == (1, 2)
    bootstrap = kafka_broker.bootstrap
    state, cache = tmp_path_factory.mktemp("stream-alias-state"), tmp_path_factory.mktemp("stream-alias-cache")
    instances = samples.instances(samples.held_out_features(repository.build / "trip_duration").head(2000))
    events = rides.make_rides(instances, EVENTS, MALFORMED_EVERY)
    rides.create_topics(bootstrap, list(TOPICS), partitions=4)
    metrics = f"127.0.0.1:{free_ports(1)}"
    args = ["--brokers", bootstrap, "--models", str(cache), "--registry", url, "--registry-poll", "200ms",
            "--input", TOPICS[0], "--output", TOPICS[1], "--dead-letter", TOPICS[2], "--max-poll-records", "500",
            "--log-format", "text"]
    log = state / "logs" / f"stream-{NAME}.log"
    try:
        stream.start(state, NAME, args, metrics)  # ready once the registry delivered version 1
        producer = threading.Thread(target=rides.produce, args=(bootstrap, TOPICS[0], events), kwargs={"rate": 4_000})
        producer.start()
        time.sleep(2)
        os.environ["MLFLOW_TRACKING_URI"] = url
        try:
            tracking.set_alias(NAME, 2)
        finally:
            del os.environ["MLFLOW_TRACKING_URI"]
        producer.join()
        wait_until("version 2 served", lambda: "version=2" in log.read_text(), timeout=30)
        valid = sum(r.instance is not None for r in events)
        predictions = rides.read(bootstrap, TOPICS[1], lambda recs: len({r.key for r in recs}) >= valid, timeout=120)
        dead = rides.read(bootstrap, TOPICS[2], lambda recs: len({r.key for r in recs}) >= EVENTS - valid, timeout=60)
    finally:
        stream.stop(state)
    return {"events": events, "predictions": predictions, "dead": dead, "cache": cache}


def test_the_alias_moved_mid_stream_switches_the_version_with_no_event_lost(alias_run):
    valid = {r.ride_id for r in alias_run["events"] if r.instance is not None}
    malformed = {r.ride_id for r in alias_run["events"] if r.instance is None}
    seen = Counter()
    versions = Counter()
    by_partition = defaultdict(list)
    for r in alias_run["predictions"]:
        body = json.loads(r.value)
        assert body["model"] == NAME
        seen[body["ride_id"]] += 1
        versions[body["version"]] += 1
        by_partition[r.partition].append((r.offset, body["version"]))
    assert set(seen) == valid, f"{len(valid - set(seen))} valid events have no prediction"
    assert {r.key.decode() for r in alias_run["dead"]} == malformed
    assert set(versions) == {1, 2} and versions[1] > 0 and versions[2] > 0, dict(versions)
    for partition, seq in by_partition.items():
        order = [v for _, v in sorted(seq)]
        if 2 in order:
            assert all(v == 2 for v in order[order.index(2):]), f"partition {partition}: version 1 after version 2"
    # The versions came from the registry, cached under --models as the server
    # caches them: the one served last, for a restart while the registry is down.
    assert sorted(p.name for p in (alias_run["cache"] / NAME).iterdir() if p.is_dir()) == ["2"]
    assert (alias_run["cache"] / NAME / ".serving").read_text().strip() == "2"
