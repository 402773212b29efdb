"""Shared fixtures: a small sample of trips, models trained on it, and the
real topology (`make up`: Go replicas behind nginx) serving them.

Everything goes through the same code paths as `make train export`, on
fewer rows so the suite stays quick. Tests are marked by their folder:
tests/unit (`pytest -m unit`: no server, no network) and tests/system
(`pytest -m system`: real servers).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import pandas as pd
import pytest

from topology import ROOT, Topology, free_ports, kafka, postgres, running  # noqa: F401  (ROOT: the tests import it from here)
from topology import mlflow as mlflow_server
from train import export, fit, pipeline, synth

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


@dataclass
class EveryFamily:
    models: Path  # a repository with one model per family
    names: dict[str, str]  # family -> model name
    trips: Path
    build: Path  # build/<name>/ of every model: held-out rows, training.json

    def pipeline(self, family: str):
        return joblib.load(self.models / self.names[family] / "1" / "pipeline.joblib")

    held_out_by_task: dict[str, pd.DataFrame] = field(default_factory=dict)  # read once per task

    def held_out(self, family: str) -> pd.DataFrame:
        """The family's held-out rows (shared: the tests take copies, iloc or assign)."""
        from verify import parity

        task = pipeline.task_of(family)
        if task not in self.held_out_by_task:
            self.held_out_by_task[task] = parity.held_out([str(self.trips)], task)[0]
        return self.held_out_by_task[task]


@pytest.fixture(scope="session")
def every_family(repository, tmp_path_factory) -> EveryFamily:
    """The shared repository's models (copied, not retrained), plus the other
    families trained on the same trips, named after their family (parity
    and the bench's families use it)."""
    root = tmp_path_factory.mktemp("every_family")
    names = {family: name for name, family in MODELS.items()}
    for name in names.values():
        shutil.copytree(repository.models / name, root / "models" / name)
        shutil.copytree(repository.build / name, root / "build" / name)
    for family in pipeline.FAMILIES:
        if family not in names:
            fit.fit([str(repository.trips)], family, family, root / "build")
            export.export(family, root / "build", root / "models")
            names[family] = family
    return EveryFamily(root / "models", {f: names[f] for f in pipeline.FAMILIES}, repository.trips, root / "build")


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
def mlflow_registry(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A real MLflow tracking server and registry on a free port (SQLite,
    proxied artifacts), for the whole session: (its URL, its state directory).
    Skips where .venv-mlflow is missing (`make mlflow` builds it)."""
    if not mlflow_server.MLFLOW.exists():
        pytest.skip("no .venv-mlflow: run `make mlflow` (make test builds it)")
    state = tmp_path_factory.mktemp("mlflow")
    url = mlflow_server.start(free_ports(1), state)
    yield url, state
    mlflow_server.stop(state)


@pytest.fixture(scope="session")
def register(mlflow_registry, repository, tmp_path_factory):
    """register(name, family, promote) fits `family` on the sample trips and
    exports it as `name` with MLFLOW_TRACKING_URI set, as `make train export`
    does: a new registered version of `name`, the champion alias moved to
    it if promote. Returns the registry's version number. Each test module
    registers names of its own, their runs in an experiment of their own
    (the registry lives for the session; test_registry counts the runs of
    the default experiment)."""
    url, _ = mlflow_registry
    root = tmp_path_factory.mktemp("registered")

    def register(name: str, family: str, promote: bool) -> int:
        import mlflow

        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "PROMOTE", "MLFLOW_EXPERIMENT_NAME")}
        os.environ.update(MLFLOW_TRACKING_URI=url, PROMOTE="1" if promote else "", MLFLOW_EXPERIMENT_NAME=f"skl2go-{name}")
        try:
            fit.fit([str(repository.trips)], family, name, root / family)
            export.export(name, root / family, root / "models")
            return max(int(v.version) for v in mlflow.MlflowClient(url).search_model_versions(f"name = '{name}'"))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return register


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL cluster (topology/postgres.py, what `make postgres`
    runs) on a free loopback port, started once for the session; its state
    under /tmp, where the postgres user can reach it."""
    state = Path(tempfile.mkdtemp(prefix="skl2go-pg-"))
    os.chmod(state, 0o755)
    cluster = postgres.Cluster(state, free_ports(1))
    try:
        yield postgres.start(cluster)
    finally:
        postgres.stop(cluster)
        shutil.rmtree(state, ignore_errors=True)
