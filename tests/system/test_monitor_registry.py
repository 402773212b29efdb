"""The retraining loop with a real MLflow registry: the reference data is an
artifact of each version's run, and the loop's challenger gets the alias
`challenger` while `champion` stays where it was."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import joblib
import pytest

import conftest
import inference_log
from monitor import loop as monitor_loop
from topology import mlflow as mlflow_server
from train import export, fit, tracking

pytestmark = pytest.mark.skipif(not (mlflow_server.MLFLOW.exists() and monitor_loop.MONITOR_PY.exists()),
                                reason="needs .venv-mlflow and .venv-monitor")
NAME = "monitored_duration"


def test_reference_is_logged_and_the_loop_sets_the_challenger_alias(repository, tmp_path, monkeypatch):
    import mlflow

    url = mlflow_server.start(conftest.free_ports(1), tmp_path / "mlflow")
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("PROMOTE", "1")
        models = tmp_path / "models"
        fit.fit([str(repository.trips)], "linear", NAME, tmp_path / "build")
        version = export.export(NAME, tmp_path / "build", models)
        client = mlflow.MlflowClient(url)
        champion = client.get_model_version_by_alias(NAME, tracking.ALIAS)
        artifacts = [a.path for a in client.list_artifacts(champion.run_id, tracking.METADATA_DIR)]
        assert f"{tracking.METADATA_DIR}/reference.parquet" in artifacts

        model = joblib.load(version / "pipeline.joblib")
        X, y = inference_log.unseen_training_rows(repository.trips)
        Xs, ys = inference_log.shift(X.iloc[:2000], y.iloc[:2000])
        state = tmp_path / "run"
        inference_log.write_log(state, "replica-1", Xs, model.predict(Xs), NAME, 1,
                                datetime.now(timezone.utc) - timedelta(minutes=5), actuals=ys.to_numpy())
        inference_log.shifted_file(state / "incoming" / "green_tripdata_2021-03.parquet", 20_000, conftest.SEED)
        result = monitor_loop.Loop(NAME, state, models, state / "incoming").cycle()
        assert result["retrained"] is True, result
        challenger = client.get_model_version_by_alias(NAME, "challenger")
        assert int(challenger.version) == int(champion.version) + 1
        assert client.get_model_version_by_alias(NAME, tracking.ALIAS).version == champion.version
        assert os.listdir(models / NAME) == ["1"]
    finally:
        mlflow_server.stop(tmp_path / "mlflow")
