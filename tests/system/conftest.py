"""Heavy services the system tests share, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loadtest.topology import free_ports
from topology import kafka


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> Iterator[kafka.Broker]:
    """A real single-node Kafka (topology/kafka.py, what `make kafka` runs) on
    a free loopback port, with its own state directory; stopped at the end."""
    broker = kafka.Broker(tmp_path_factory.mktemp("kafka-state"), free_ports(1))
    kafka.start(broker)
    try:
        yield broker
    finally:
        kafka.stop(broker)
