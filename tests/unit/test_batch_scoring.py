"""Batch scoring without a server: features, reasons, the local engine, bad input.

Scoring through the real server (bit for bit) and on Spark: tests/system/test_batch_parity.py.
"""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch import __main__ as cli
from batch import local, model, score
from train import data, export, features, graph, synth


def test_clock_features_match_pandas_on_naive_timestamps():
    rng = np.random.default_rng(3)
    stamps = pd.to_datetime(rng.integers(-10 * 365 * 86400, 60 * 365 * 86400, 5000), unit="s")
    hour, weekday = features.clock(stamps.to_numpy())
    assert (hour == stamps.hour.to_numpy()).all()
    assert (weekday == stamps.day_of_week.to_numpy()).all()


def test_inputs_are_typed_and_ordered_like_the_graph():
    X = features.inputs(np.array(["2021-01-04T08:30"], dtype="datetime64[us]"), np.array([74]), np.array([75]),
                        np.array([2.5]))
    assert {k: str(v.dtype) for k, v in X.items()} == features.FEATURES
    assert list(X) == list(features.FEATURES)
    assert (X["pickup_hour"][0], X["pickup_weekday"][0]) == (8, 0)  # a Monday


def trips(rows: list[dict]) -> pa.RecordBatch:
    base = {"ride_id": "t:0", "pickup_datetime": pd.Timestamp("2021-01-05 08:00"),
            "dropoff_datetime": pd.Timestamp("2021-01-05 08:12"), "PULocationID": 74, "DOLocationID": 75,
            "trip_distance": 2.5, "payment_type": 1.0, "tip_amount": 1.0}
    frame = pd.DataFrame([{**base, "ride_id": f"t:{i}", **row} for i, row in enumerate(rows)])
    return pa.RecordBatch.from_pandas(frame, schema=score.TRIPS, preserve_index=False)


def test_trips_that_cannot_be_scored_are_kept_with_a_reason(repository):
    scorer = score.Scorer(model.resolve(repository.models, "trip_duration"))
    out = scorer.score(trips([
        {},
        {"PULocationID": None},
        {"trip_distance": float("nan")},
        {"trip_distance": 1500.0},
        {"trip_distance": -0.5, "DOLocationID": None},
        {"pickup_datetime": None},
        {"trip_distance": 1000.0},
    ])).to_pydict()
    assert out["reason"] == [
        None,
        "missing PULocationID",
        "missing trip_distance",
        "trip_distance 1500 outside the model's range [0, 1000]",
        "missing DOLocationID; trip_distance -0.5 outside the model's range [0, 1000]",
        "missing pickup_datetime",
        None,
    ]
    assert [p is None for p in out["prediction"]] == [False, True, True, True, True, True, False]
    assert out["pickup_hour"] == [8] * 5 + [None, 8]
    assert out["trip_distance"][3] == 1500.0  # the input as the model would have seen it
    assert out["actual_duration"][0] == 12.0
    assert out["difference"][0] == pytest.approx(out["prediction"][0] - 12.0)
    assert set(out["model_name"]) == {"trip_duration"} and set(out["model_version"]) == {1}


def test_a_lone_scorable_row_gets_its_answer_within_a_batch(repository):
    """ONNX Runtime's one-row matrix multiply adds in another order; model.predict never runs one row."""
    published = model.resolve(repository.models, "trip_duration")
    scorer = score.Scorer(published)
    validation = pd.read_parquet(repository.build / "trip_duration" / "validation.parquet")
    X = {c: validation[c].to_numpy()[:500].reshape(-1, 1) for c in features.FEATURES}
    together = model.predict(scorer.session, X)[0].reshape(-1)
    alone = np.concatenate([model.predict(scorer.session, {c: v[i:i + 1] for c, v in X.items()})[0].reshape(-1)
                            for i in range(len(together))])
    assert alone.tobytes() == together.tobytes()
    # The published graph gathers coefficients (graph.sparse_linear): even a bare one-row run agrees.
    assert bare_runs(scorer.session, X).tobytes() == together.tobytes()
    # The reason model.predict never runs one row: a graph that multiplies
    # matrices, such as skl2onnx's dense one-hot form of the same model, differs somewhere.
    pipeline = joblib.load(published.path / "pipeline.joblib")
    dense, _ = graph.simplify(export.convert(pipeline, validation[list(features.FEATURES)]))
    session = model.session(dense.SerializeToString())
    assert bare_runs(session, X).tobytes() != model.predict(session, X)[0].reshape(-1).tobytes()


def bare_runs(session, X: dict[str, np.ndarray]) -> np.ndarray:
    """Each row run alone, as it is."""
    rows = len(next(iter(X.values())))
    return np.concatenate([session.run(None, {c: v[i:i + 1] for c, v in X.items()})[0].reshape(-1)
                           for i in range(rows)])


def test_classifier_output_has_labels_probabilities_and_the_actual_tip(repository):
    scorer = score.Scorer(model.resolve(repository.models, "tip_given"))
    out = scorer.score(trips([{}, {"payment_type": 2.0}, {"tip_amount": 0.0}, {"trip_distance": None}]))
    assert out.schema.names == scorer.schema.names
    assert {"label", "probability_0", "probability_1", "actual_tip_given"} <= set(out.schema.names)
    out = out.to_pydict()
    assert out["actual_tip_given"] == [1, None, 0, 1]  # known on card payments only
    assert [label is None for label in out["label"]] == [False, False, False, True]
    assert all(abs(p0 + p1 - 1) < 1e-6 for p0, p1 in zip(out["probability_0"][:3], out["probability_1"][:3]))


def test_the_local_engine_streams_and_its_answers_do_not_depend_on_the_batch_size(repository, tmp_path):
    published = model.resolve(repository.models, "trip_duration")
    small = local.score([repository.trips], tmp_path / "small.parquet", published, batch_rows=4097, log=lambda m: None)
    large = local.score([repository.trips], tmp_path / "large.parquet", published, log=lambda m: None)
    a, b = pq.read_table(tmp_path / "small.parquet"), pq.read_table(tmp_path / "large.parquet")
    assert small["rows"] == large["rows"] == pq.read_metadata(repository.trips).num_rows == a.num_rows
    assert pq.read_metadata(tmp_path / "small.parquet").num_row_groups > 5  # written batch by batch
    assert a.equals(b)
    ride_ids = a.column("ride_id").to_pylist()
    assert len(set(ride_ids)) == len(ride_ids) and ride_ids[0] == f"{repository.trips.name}:0"


def test_the_local_engine_reports_where_its_time_went(repository, tmp_path):
    published = model.resolve(repository.models, "trip_duration")
    lines = []
    result = local.score([repository.trips], tmp_path / "scored.parquet", published, batch_rows=4097, log=lines.append)
    stages = result["stages"]
    assert json.loads(next(m for m in lines if m.startswith("[stages] ")).split(" ", 1)[1]) == stages
    for stage in ("session", "read", "ride ids", "features", "onnx", "output", "write"):
        assert stages[stage]["wall"] > 0 and stages[stage]["cpu"] >= 0, stage
    assert stages["onnx"]["cpu"] > 0  # counted on ONNX Runtime's runs, not the waiting caller
    assert stages["before the run"]["cpu"] > 0 and stages["run"]["cpu"] > 0 and stages["not in a stage"]


def run(*args: str) -> int:
    return cli.main(["score", *args])


def test_a_file_that_is_not_tlc_shaped_is_refused_with_its_name_and_the_missing_column(repository, tmp_path, capsys):
    models = ["--models", str(repository.models)]
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1], "b": [2]}), other)
    assert run("--data", str(repository.trips), str(other), "--out", str(tmp_path / "o.parquet"), *models) == 1
    err = capsys.readouterr().err
    assert str(other) in err and "tpep_pickup_datetime" in err
    no_distance = tmp_path / "yellow.parquet"
    pq.write_table(synth.as_yellow(synth.generate(100)).drop_columns(["trip_distance"]), no_distance)
    assert run("--data", str(no_distance), "--out", str(tmp_path / "o.parquet"), *models) == 1
    err = capsys.readouterr().err
    assert str(no_distance) in err and "missing column(s) trip_distance" in err
    text = tmp_path / "notes.parquet"
    text.write_text("not parquet")
    assert run("--data", str(text), "--out", str(tmp_path / "o.parquet"), *models) == 1
    assert f"{text}: not a parquet file" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


def test_an_existing_output_is_replaced_only_with_overwrite(repository, tmp_path, capsys):
    out = tmp_path / "scored.parquet"
    out.write_bytes(b"keep me")
    args = ["--data", str(repository.trips), "--out", str(out), "--models", str(repository.models)]
    assert run(*args) == 1
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert run(*args, "--overwrite") == 0
    assert pq.read_metadata(out).num_rows == pq.read_metadata(repository.trips).num_rows
    out.unlink()
    out.mkdir()  # an earlier Spark run's output directory
    (out / "part-0.parquet").write_bytes(b"old")
    assert run(*args) == 1 and (out / "part-0.parquet").read_bytes() == b"old"
    assert run(*args, "--overwrite") == 0
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["scored.parquet"]


def test_unknown_models_and_versions_are_refused(repository, tmp_path, capsys):
    args = ["--data", str(repository.trips), "--out", str(tmp_path / "o.parquet"), "--models", str(repository.models)]
    assert run(*args, "--name", "nope") == 1
    assert "no published version of model 'nope'" in capsys.readouterr().err
    assert run(*args, "--version", "9") == 1
    assert "has no version 9" in capsys.readouterr().err
    assert model.resolve(repository.models, "trip_duration").version == 1


def test_a_failed_run_leaves_no_output_behind(repository, tmp_path, monkeypatch):
    published = model.resolve(repository.models, "trip_duration")
    calls = []
    real = score.Scorer.score

    def failing(self, batch, *stages):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(self, batch, *stages)

    monkeypatch.setattr(score.Scorer, "score", failing)
    out = tmp_path / "out" / "scored.parquet"
    with pytest.raises(RuntimeError, match="disk on fire"):
        local.score([repository.trips], out, published, batch_rows=5000, log=lambda m: None)
    assert len(calls) == 3
    assert list(out.parent.iterdir()) == []  # neither the output nor its temporary file


def test_training_keeps_computing_the_same_features(trips_file):
    """features.inputs replaced pandas' dt accessors in make_features: same values."""
    trips = data.load_trips([trips_file]).frame
    X, _ = data.make_features(trips)
    kept = trips.sort_values("pickup_datetime", kind="stable")
    minutes = (kept["dropoff_datetime"] - kept["pickup_datetime"]).dt.total_seconds() / 60
    kept = kept[minutes.between(1, 60) & kept["trip_distance"].between(0, 1000)]
    assert len(X) == len(kept)
    assert (X["pickup_hour"].to_numpy() == kept["pickup_datetime"].dt.hour.to_numpy()).all()
    assert (X["pickup_weekday"].to_numpy() == kept["pickup_datetime"].dt.day_of_week.to_numpy()).all()
