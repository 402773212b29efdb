"""Shared fixtures: a small sample of trips, models trained on it, and the
real topology (`make up`: Go replicas behind nginx) serving them.

Everything goes through the same code paths as `make train export`, on
fewer rows so the suite stays quick. Tests are marked by their folder:
tests/unit (`pytest -m unit`: no server, no network) and tests/system
(`pytest -m system`: real servers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from topology import ROOT, Topology, free_ports, kafka, postgres, running  # noqa: F401  (ROOT: the tests import it from here)
from train import export, fit, synth

HERE = Path(__file__).resolve().parent
ROWS = 40_000
SEED = 7
REPLICAS = 2


@dataclass
class Repository:
    trips: Path  # the sample parquet file
    build: Path  # build/<name>/: fitted pipeline, validation rows
    models: Path  # the model repository the server reads


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker("unit" if item.path.is_relative_to(HERE / "unit") else "system")


@pytest.fixture(scope="session")
def trips_file(tmp_path_factory) -> Path:
    return synth.write(tmp_path_factory.mktemp("data") / "green_tripdata_sample.parquet", rows=ROWS, seed=SEED)


# The models the shared repository publishes: name -> family.
MODELS = {
    "trip_duration": "linear",  # the regression baseline
    "trip_duration_hgb": "hist_gradient_boosting",  # a tree ensemble
    "tip_given": "logistic_regression",  # a classifier: label and class probabilities
}


@pytest.fixture(scope="session")
def repository(tmp_path_factory, trips_file) -> Repository:
    """Published models (MODELS): two regressors and a classifier."""
    root = tmp_path_factory.mktemp("repo")
    repo = Repository(trips_file, root / "build", root / "models")
    for name, family in MODELS.items():
        fit.fit([str(trips_file)], family, name, repo.build)
        export.export(name, repo.build, repo.models)
    return repo


@pytest.fixture(scope="session")
def topology(repository, tmp_path_factory) -> Iterator[Topology]:
    """The repository's models served by REPLICAS replicas behind nginx, shared
    by every test that only sends requests (tests that break a topology start
    their own)."""
    with running(repository.models, tmp_path_factory.mktemp("run"), replicas=REPLICAS) as topology:
        yield topology


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> Iterator[kafka.Broker]:
    """A real single-node Kafka (topology/kafka.py, what `make kafka` runs) on
    a free loopback port, with its own state directory, started once for the
    session and stopped at the end."""
    broker = kafka.Broker(tmp_path_factory.mktemp("kafka-state"), free_ports(1))
    kafka.start(broker)
    try:
        yield broker
    finally:
        kafka.stop(broker)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL cluster (topology/postgres.py, what `make postgres`
    runs) on a free loopback port, started once for the session; its state
    under /tmp, where the postgres user can reach it."""
    import os
    import shutil
    import tempfile

    state = Path(tempfile.mkdtemp(prefix="skl2go-pg-"))
    os.chmod(state, 0o755)
    cluster = postgres.Cluster(state, free_ports(1))
    try:
        yield postgres.start(cluster)
    finally:
        postgres.stop(cluster)
        shutil.rmtree(state, ignore_errors=True)
