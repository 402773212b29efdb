"""The MLflow flow end to end, on the real `mlflow server` (started once for
this session, from .venv-mlflow): export logs runs and registers versions,
the MLflow client sees them, and Go replicas behind nginx serve what the
champion alias points to, follow it under load, and ride out the registry
going down.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtest import paced
from topology import make, request, running, wait_until
from topology import mlflow as mlflow_server
from train import export, fit, tracking

NAME = "trip_duration"
RATE = 100  # requests/s of the checked load (skl2go-load) while the alias moves and the registry is down
pytestmark = pytest.mark.skipif(not mlflow_server.MLFLOW.exists(),
                                reason="no .venv-mlflow: run `make mlflow` (make test builds it)")


@dataclass
class Registry:
    url: str
    state: Path
    build: Path  # build/<NAME>: the held-out trips


@pytest.fixture(scope="module")
def registry(mlflow_registry, repository, tmp_path_factory) -> Iterator[Registry]:
    """Two versions of trip_duration registered by export: 1 (linear,
    promoted with PROMOTE=1) and 2 (ridge, not promoted)."""
    url, state = mlflow_registry
    root = tmp_path_factory.mktemp("tracked")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "PROMOTE")}
    os.environ["MLFLOW_TRACKING_URI"] = url
    try:
        for family, promote in (("linear", "1"), ("ridge", "")):
            os.environ["PROMOTE"] = promote
            fit.fit([str(repository.trips)], family, NAME, root / family)
            export.export(NAME, root / family, root / "models")
        yield Registry(url, state, root / "linear" / NAME)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_start_converges_on_a_healthy_server(registry):
    pid = mlflow_server.pid(registry.state)
    port = int(registry.url.rsplit(":", 1)[1])
    assert mlflow_server.start(port, registry.state) == registry.url
    assert mlflow_server.pid(registry.state) == pid  # left alone, not restarted


def test_runs_have_params_metrics_and_both_flavors(registry):
    import mlflow

    client = mlflow.MlflowClient(registry.url)
    runs = client.search_runs([client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id])
    assert sorted(r.data.params["family"] for r in runs) == ["linear", "ridge"]
    for run in runs:
        assert run.data.params["data.fingerprint"].startswith("sha256:")
        assert {"validation_rmse", "validation_r2", "parity_max_rel_error"} <= set(run.data.metrics)
        assert [a.path for a in client.list_artifacts(run.info.run_id, tracking.METADATA_DIR)] == [
            "skl2go/model.json", "skl2go/reference.parquet"]  # the version's metadata and its reference data
        flavors = {}
        for logged in mlflow.search_logged_models(filter_string=f"source_run_id = '{run.info.run_id}'",
                                                  output_format="list"):
            info = mlflow.models.get_model_info(f"models:/{logged.model_id}")
            flavors[logged.name] = set(info.flavors)
            assert info.signature is not None and [i.name for i in info.signature.inputs.inputs][:2] == [
                "PULocationID", "DOLocationID"]
        assert "onnx" in flavors["onnx"] and "sklearn" in flavors["sklearn"], flavors
    versions = {int(v.version): v for v in client.search_model_versions(f"name = '{NAME}'")}
    assert sorted(versions) == [1, 2]
    assert client.get_model_version_by_alias(NAME, tracking.ALIAS).version == "1"  # PROMOTE=1 on the first only


def served(topo) -> list[list[int]]:
    return topo.served_versions(NAME)


def test_replicas_follow_the_alias_under_load_and_ride_out_the_registry_down(registry, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.url}
    work = tmp_path / "work"
    work.mkdir()
    bodies = paced.bodies(work / "bodies-1.jsonl", registry.build)
    with running(tmp_path / "unused-models", tmp_path / "run", replicas=2,
                 SKL2GO_REGISTRY=registry.url, SKL2GO_REGISTRY_POLL="1s") as topo:
        assert served(topo) == [[1], [1]]

        # Move the alias under a steady load: every answer good, versions 1 then 2.
        load = paced.Load(topo.url, bodies, RATE, 16, work / "load-alias.log", NAME)
        time.sleep(2)
        promoted = make("promote", {**env, "NAME": NAME, "VERSION": "2"})
        assert promoted.returncode == 0, promoted.stderr
        wait_until("both replicas to serve version 2", lambda: served(topo) == [[2], [2]], timeout=30)
        time.sleep(2)
        result = load.stop()
        assert result["requests"] > 0 and result["errors"] == {}, result  # every answer 200 and checked
        assert set(result["versions"]) == {"1", "2"}, result["versions"]
        status, answer = request("POST", f"{topo.url}/v1/models/{NAME}:predict", b'{"instances": [{"PULocationID": 74, '
                                 b'"DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8, "pickup_weekday": 1}]}')
        assert status == 200 and answer["version"] == 2
        assert request("GET", f"{topo.url}/v2/models/{NAME}")[1]["versions"] == ["2"]  # metadata

        # The registry goes down: the replicas keep answering and stay ready,
        # count the failed polls, and a replica restarted meanwhile serves its cache.
        load = paced.Load(topo.url, bodies, RATE, 16, work / "load-down.log", NAME)
        time.sleep(1)
        mlflow_server.stop(registry.state)
        try:
            wait_until("a failed poll on each replica", lambda: all(
                topo.metric(r, "skl2go_registry_poll_errors_total") > 0 for r in (1, 2)), timeout=30)
            assert [topo.metric(r, "skl2go_registry_up") for r in (1, 2)] == [0, 0]
            pid = topo.pids()[0]
            os.kill(pid, signal.SIGTERM)
            wait_until("replica 1 to exit", lambda: not Path(f"/proc/{pid}").exists(), timeout=40)
            topo.start_replica(1)
            time.sleep(2)
            result = load.stop()
            assert result["requests"] > 0 and result["errors"] == {}, result
            assert set(result["versions"]) == {"2"}, result["versions"]
            assert served(topo) == [[2], [2]]
            assert all(request("GET", r + "/readyz")[0] == 200 for r in topo.replicas)
            log = (topo.state / "logs" / "replica-1.log").read_text()
            assert "serving the cached registry version" in log and "model registry unreachable" in log
        finally:
            # The registry is the session's: the next modules need it back.
            mlflow_server.start(int(registry.url.rsplit(":", 1)[1]), registry.state)
