"""Fast checks of the streaming parts that need no broker: the broker
launcher's health probe and configuration, and the ride events."""

from __future__ import annotations

import json
import os
import socket
import threading

from loadtest import rides
from topology import free_ports, kafka, stream

INSTANCE = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8, "pickup_weekday": 1}


def test_health_probe_needs_a_kafka_answer_not_an_open_port():
    port = free_ports(1)
    assert not kafka.api_versions(port, timeout=0.5)  # nothing listens
    with socket.socket() as server:  # something listens, answers nonsense and hangs up
        server.bind(("127.0.0.1", port))
        server.listen()

        def answer():
            conn, _ = server.accept()
            conn.recv(64)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        assert not kafka.api_versions(port, timeout=2)


def test_config_is_loopback_only_and_keeps_its_controller_port(tmp_path):
    broker = kafka.Broker(tmp_path, port=free_ports(1))
    broker.dir.mkdir(parents=True)
    first = kafka.write_config(broker).read_text()
    assert f"listeners=PLAINTEXT://127.0.0.1:{broker.port},CONTROLLER://127.0.0.1:" in first
    assert "advertised.listeners=PLAINTEXT://127.0.0.1:" in first
    assert "auto.create.topics.enable=false" in first
    assert kafka.write_config(broker).read_text() == first  # the formatted log records the controller's port


def test_rides_are_events_with_ids_and_the_malformed_ones_are_broken():
    made = rides.make_rides([INSTANCE], 7 * 20, malformed_every=7)
    assert len(made) == 140 and len({r.ride_id for r in made}) == 140
    bad = [r for r in made if r.instance is None]
    assert len(bad) == 20 and {r.kind for r in bad} == set(rides.MALFORMED)
    for r in made:
        if r.instance is not None:
            assert json.loads(r.value) == {"ride_id": r.ride_id, **INSTANCE}
    for r in bad:
        try:
            event = json.loads(r.value)
        except ValueError:
            continue
        assert not isinstance(event, dict) or event.keys() != {"ride_id", *INSTANCE} or event != {"ride_id": r.ride_id, **INSTANCE}


def test_stopping_consumers_converges_and_spares_other_processes(tmp_path):
    pid_file = tmp_path / "stream-trip_duration.pid"
    pid_file.write_text(str(os.getpid()))  # a live process, but not a consumer: a stale pid file
    assert stream.pid(tmp_path, "trip_duration") is None
    stream.stop(tmp_path)  # must not signal this test's own process
    assert not pid_file.exists()
    stream.stop(tmp_path)  # nothing left: a no-op
