"""What an export logs to MLflow, and how the embedded server is started
(no server here: tests/system/test_registry.py runs the real one)."""

from __future__ import annotations

import json

import pytest

from topology import mlflow as mlflow_server
from train import export, fit, tracking


@pytest.fixture(scope="module")
def published(trips_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    fit.fit([str(trips_file)], "ridge", "trip_duration", root / "build")
    path = export.export("trip_duration", root / "build", root / "models")
    return json.loads((path / "model.json").read_text()), root


def test_params_name_the_family_hyper_parameters_and_data(published):
    import joblib

    meta, root = published
    model = joblib.load(root / "build" / "trip_duration" / "pipeline.joblib")
    params = tracking.params(meta, model)
    assert params["family"] == "ridge" and params["estimator"] == "Ridge" and params["task"] == "regression"
    assert params["model.alpha"] == model.steps[-1][1].alpha
    assert params["data.files"] == "green_tripdata_sample.parquet"
    assert params["data.fingerprint"] == meta["data"]["fingerprint"] and params["skl2go.version"] == 1
    assert all(isinstance(v, (str, int, float, bool)) or v is None for v in params.values())


def test_metrics_hold_validation_and_parity_figures(published):
    meta, _ = published
    metrics = tracking.metrics(meta)
    assert metrics["validation_rmse"] == meta["metrics"]["validation"]["rmse"]
    assert metrics["validation_r2"] == meta["metrics"]["validation"]["r2"]
    assert metrics["parity_max_rel_error"] == meta["parity"]["max_rel_error"]
    assert metrics["parity_rows"] == meta["parity"]["rows"]
    assert all(isinstance(v, float) for v in metrics.values())


def test_export_tracks_nothing_without_a_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not tracking.enabled()
    assert tracking.main(["promote", "--name", "trip_duration", "--version", "1"]) == 2


def test_server_binds_loopback_with_sqlite_and_proxied_artifacts(tmp_path):
    argv = mlflow_server.command(tmp_path, 5123)
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "5123"
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert "--serve-artifacts" in argv and argv[argv.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")


def test_stop_and_status_converge_when_nothing_runs(tmp_path):
    mlflow_server.stop(tmp_path)  # nothing to stop: no error
    assert mlflow_server.status(tmp_path) is False
    (tmp_path / "mlflow.pid").write_text("999999999\n")  # a stale pid file
    assert mlflow_server.pid(tmp_path) is None
    mlflow_server.stop(tmp_path)
    assert not (tmp_path / "mlflow.pid").exists()
