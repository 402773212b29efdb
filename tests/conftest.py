"""Shared fixtures: a small sample of trips, models trained on it, and the
real topology (`make up`: Go replicas behind nginx) serving them.

Everything goes through the same code paths as `make train export`, on
fewer rows so the suite stays quick.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from train import export, fit, synth

ROOT = Path(__file__).resolve().parents[1]
ROWS = 40_000
SEED = 7
REPLICAS = 2


@dataclass
class Repository:
    trips: Path  # the sample parquet file
    build: Path  # build/<name>/: fitted pipeline, validation rows
    models: Path  # the model repository the server reads


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
class Topology:
    url: str  # nginx
    replicas: list[str]
    state: Path
    env: dict


def free_ports(n: int) -> int:
    """Return a port p such that p … p+n-1 are free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n < 65536 and all(port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def make(target: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def topology_env(models: Path, state: Path) -> dict:
    base = free_ports(REPLICAS)
    port = free_ports(1)
    return {**os.environ, "PORT": str(port), "BASE_PORT": str(base), "REPLICAS": str(REPLICAS),
            "MODELS": str(models), "STATE": str(state)}


@contextlib.contextmanager
def running_topology(models: Path, state: Path) -> Iterator[Topology]:
    """`make up` on free loopback ports; `make down` on exit."""
    env = topology_env(models, state)
    started = make("up", env)
    try:
        assert started.returncode == 0, f"make up failed:\n{started.stdout}\n{started.stderr}"
        base = int(env["BASE_PORT"])
        yield Topology(f"http://127.0.0.1:{env['PORT']}",
                       [f"http://127.0.0.1:{base + i}" for i in range(REPLICAS)], state, env)
    finally:
        make("down", env)


@pytest.fixture(scope="session")
def topology(repository, tmp_path_factory) -> Iterator[Topology]:
    """The repository's models served by REPLICAS replicas behind nginx, shared
    by every test that only sends requests (tests that break a topology start
    their own)."""
    with running_topology(repository.models, tmp_path_factory.mktemp("run")) as topology:
        yield topology
