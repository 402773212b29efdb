"""Ride events for the stream consumers: held-out trips written as the JSON
event a ride start produces (a model's inputs plus `ride_id`), some broken on
purpose, and the kafka-python calls that create topics, produce events and
read topics back. The stream test and the stream benchmark share them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


@dataclass
class Ride:
    ride_id: str
    value: bytes  # the record's value as produced
    instance: dict | None  # the model inputs, None for a malformed event
    kind: str = "valid"  # or the kind of damage (MALFORMED)


def _encode(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


# Ways an event goes wrong, each with the message the consumer must give.
MALFORMED: dict[str, tuple[Callable[[dict], bytes], str]] = {
    "cut": (lambda e: _encode(e)[:20], "malformed JSON"),
    "no ride_id": (lambda e: _encode({k: v for k, v in e.items() if k != "ride_id"}), "event.ride_id: missing"),
    "missing field": (lambda e: _encode({k: v for k, v in e.items() if k != "trip_distance"}), "event.trip_distance: missing"),
    "wrong type": (lambda e: _encode({**e, "PULocationID": str(e["PULocationID"])}), "event.PULocationID: expected an integer, got string"),
    "out of range": (lambda e: _encode({**e, "trip_distance": 5000}), "event.trip_distance: 5000 is out of range"),
    "not an object": (lambda e: b"[1, 2, 3]", "event: expected an object, got an array"),
    "NaN": (lambda e: _encode(e).replace(b'"trip_distance":', b'"trip_distance":NaN,"x":'), "NaN and Infinity are not JSON numbers"),
}


def make_rides(instances: list[dict], count: int, malformed_every: int = 0, first: int = 0) -> list[Ride]:
    """`count` events cycling through `instances`, ride ids r-<first>…;
    every `malformed_every`-th one broken (cycling through MALFORMED)."""
    kinds = list(MALFORMED)
    rides = []
    for i in range(first, first + count):
        instance = instances[i % len(instances)]
        event = {"ride_id": f"r-{i}", **instance}
        if malformed_every and i % malformed_every == malformed_every - 1:
            kind = kinds[(i // malformed_every) % len(kinds)]
            rides.append(Ride(f"r-{i}", MALFORMED[kind][0](event), None, kind))
        else:
            rides.append(Ride(f"r-{i}", _encode(event), instance))
    return rides


def create_topics(bootstrap: str, names: list[str], partitions: int = 4) -> None:
    """Create the topics that do not exist yet."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for name in names:
            try:
                admin.create_topics([NewTopic(name, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024,
                         max_in_flight_requests_per_connection=5, enable_idempotence=True)


def produce(bootstrap: str, topic: str, rides: list[Ride], rate: float | None = None) -> None:
    """Send the rides (key = ride id), at most `rate` per second if given, and
    wait until the broker has them all."""
    out = producer(bootstrap)
    start = time.monotonic()
    try:
        for n, ride in enumerate(rides):
            out.send(topic, key=ride.ride_id.encode(), value=ride.value)
            if rate and n % 100 == 99 and (ahead := (n + 1) / rate - (time.monotonic() - start)) > 0:
                time.sleep(ahead)
        out.flush(timeout=120)
    finally:
        out.close()


def read(bootstrap: str, topic: str, done: Callable[[list], bool], timeout: float = 60) -> list:
    """Read `topic` from its start (no group) until done(records) or timeout
    seconds; returns the records (kafka-python ConsumerRecords)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             max_poll_records=5000, fetch_max_bytes=16 * 1024 * 1024)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        records: list = []
        deadline = time.monotonic() + timeout
        while not done(records) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def count(bootstrap: str, topic: str, consumer: KafkaConsumer | None = None) -> int:
    """Records in a topic: the sum of its partitions' end offsets (through
    `consumer` if given, else a client made for this call)."""
    client = consumer or KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in client.partitions_for_topic(topic) or set()]
        return sum(client.end_offsets(partitions).values())
    finally:
        if consumer is None:
            client.close()
