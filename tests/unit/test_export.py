"""Export: the ONNX graph must reproduce sklearn, or nothing is published."""

from __future__ import annotations

import hashlib
import json

import joblib
import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import sklearn
from skl2onnx import to_onnx

import conftest
from train import agreement, data, export, fit, tasks
from train import repository as train_repository  # the fixture `repository` is another thing
from train.__main__ import main


def test_publishes_model_json_beside_the_graph(repository):
    version = repository.models / "trip_duration" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.json", "model.onnx", "pipeline.joblib",
                                                        "reference.parquet"]
    meta = json.loads((version / "model.json").read_text())
    assert (meta["name"], meta["version"], meta["task"], meta["family"]) == ("trip_duration", 1, "regression", "linear")
    assert [(i["name"], i["type"], i["shape"]) for i in meta["inputs"]] == [
        ("PULocationID", "tensor(int64)", [-1, 1]),
        ("DOLocationID", "tensor(int64)", [-1, 1]),
        ("trip_distance", "tensor(float)", [-1, 1]),
        ("pickup_hour", "tensor(int64)", [-1, 1]),
        ("pickup_weekday", "tensor(int64)", [-1, 1]),
    ]
    assert [i["name"] for i in meta["inputs"]] == list(data.FEATURES)
    assert isinstance(meta["inputs"][0]["example"], int) and isinstance(meta["inputs"][2]["example"], float)
    assert meta["outputs"] == [{"name": "variable", "type": "tensor(float)", "shape": [-1, 1]}]
    assert {"rmse", "mae", "r2", "rows"} <= set(meta["metrics"]["validation"])
    assert meta["metrics"]["validation"]["r2"] > 0.5  # the sample data is learnable
    assert meta["data"]["fingerprint"] == data.fingerprint(data.load_trips([repository.trips]).files)
    assert meta["libraries"]["onnxruntime"] == onnxruntime.__version__
    assert meta["libraries"]["scikit-learn"] == sklearn.__version__
    assert meta["files"]["onnx"]["sha256"] == hashlib.sha256((version / "model.onnx").read_bytes()).hexdigest()
    assert meta["parity"]["max_rel_error"] <= agreement.RTOL
    assert len(meta["examples"]) == export.N_EXAMPLES
    assert set(meta["examples"][0]["instance"]) == set(data.FEATURES)


@pytest.mark.parametrize("name", ["trip_duration", "tip_given"])
def test_reference_is_a_training_sample_with_the_graphs_predictions(repository, name):
    """reference.parquet: at most REFERENCE_ROWS training rows (not held-out
    ones), typed like the graph's inputs, with the answers the server gives."""
    version = repository.models / name / "1"
    reference = pd.read_parquet(version / "reference.parquet")
    meta = json.loads((version / "model.json").read_text())
    assert meta["files"]["reference"] == {"path": "reference.parquet"}
    inputs = list(data.FEATURES)
    extra = ["prediction", "probability"] if meta["task"] == "classification" else ["prediction"]
    assert list(reference.columns) == inputs + extra
    assert {c: str(t) for c, t in reference[inputs].dtypes.items()} == data.FEATURES
    assert len(reference) == min(tasks.REFERENCE_ROWS, meta["data"]["rows_train"])
    X, y = data.make_features(data.load_trips([repository.trips], meta["task"]).frame, meta["task"])
    X_train = data.split_latest(X, y)[0]
    assert reference[inputs].equals(fit.reference_sample(X_train, seed=0))
    model = joblib.load(version / "pipeline.joblib")
    if meta["task"] == "classification":
        assert (reference["prediction"].to_numpy() == model.predict(reference[inputs])).all()
        assert np.allclose(reference["probability"], model.predict_proba(reference[inputs])[:, -1], atol=1e-5)
    else:
        assert np.allclose(reference["prediction"], model.predict(reference[inputs]), rtol=1e-4)


def test_reference_sample_is_deterministic_and_bounded():
    X = pd.DataFrame({"a": np.arange(20_000), "b": np.arange(20_000) * 0.5})
    first, again, other = fit.reference_sample(X, 0), fit.reference_sample(X, 0), fit.reference_sample(X, 1)
    assert len(first) == tasks.REFERENCE_ROWS and first.equals(again) and not first.equals(other)
    assert first["a"].is_monotonic_increasing and first["a"].is_unique  # training order, no row twice
    assert fit.reference_sample(X.iloc[:10], 0).equals(X.iloc[:10])


def test_versions_are_the_next_integer_and_appear_whole(repository, tmp_path):
    models = tmp_path / "models"
    (models / "trip_duration" / "7").mkdir(parents=True)
    (models / "trip_duration" / "not-a-version").mkdir()
    first = export.export("trip_duration", repository.build, models)
    second = export.export("trip_duration", repository.build, models)
    assert (first.name, second.name) == ("8", "9")
    assert json.loads((second / "model.json").read_text())["version"] == 9
    leftovers = [p.name for p in (models / "trip_duration").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def tamper(model: onnx.ModelProto) -> onnx.ModelProto:
    """Nudge a linear model's distance coefficient, as a broken converter might."""
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "coefficients":
                attr.floats[-1] += 0.05
                return model
    raise AssertionError("no coefficients attribute in the graph")


@pytest.mark.parametrize("name, expected", [
    ("trip_duration", ["tolerance 0.0001 relative", "rel_error"]),
    ("tip_given", ["labels identical, probabilities within 1e-05", "sklearn_label", "onnx_p1", "proba_error"]),
])
def test_a_model_that_differs_from_sklearn_is_refused_and_nothing_written(repository, tmp_path, monkeypatch, capsys,
                                                                          name, expected):
    convert = export.convert
    monkeypatch.setattr(export, "convert", lambda model, example: tamper(convert(model, example)))
    models = tmp_path / "models"
    code = main(["export", "--name", name, "--build", str(repository.build), "--models", str(models)])
    assert code == 1
    message = capsys.readouterr().err
    assert "ONNX Runtime differs from sklearn" in message
    assert "worst rows" in message and "trip_distance" in message
    assert all(e in message for e in expected), message
    assert not models.exists() or not any(models.rglob("*"))


def test_tree_models_match_sklearn_on_every_held_out_row(repository):
    meta = json.loads((repository.models / "trip_duration_hgb" / "1" / "model.json").read_text())
    assert meta["family"] == "hist_gradient_boosting"
    assert meta["parity"]["rows"] == meta["metrics"]["validation"]["rows"]
    assert meta["parity"]["max_rel_error"] <= agreement.RTOL


def test_export_without_training_says_what_to_run(tmp_path, capsys):
    assert main(["export", "--name", "nothing", "--build", str(tmp_path), "--models", str(tmp_path / "m")]) == 1
    assert "python -m train fit --name nothing" in capsys.readouterr().err


def test_fit_refuses_an_unknown_family(trips_file, tmp_path):
    with pytest.raises(ValueError, match="unknown model family 'xgboost'"):
        fit.fit([str(trips_file)], "xgboost", "x", tmp_path)


def test_a_publish_that_fails_halfway_leaves_no_version_behind(repository, tmp_path, monkeypatch):
    """A server polling the repository must never see half a version: the
    files go into a hidden directory that is renamed only when complete."""
    models = tmp_path / "models"
    seen_during_write = []

    def copy_then_fail(src, dst, *args, **kwargs):
        seen_during_write.extend(p.name for p in (models / "trip_duration").iterdir())
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_repository.shutil, "copyfile", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export.export("trip_duration", repository.build, models)
    assert len(seen_during_write) == 1 and seen_during_write[0].startswith(".incoming-")  # hidden while written
    assert list((models / "trip_duration").iterdir()) == []  # and gone after the failure
def test_a_classifier_publishes_labels_and_probabilities(repository):
    version = repository.models / "tip_given" / "1"
    meta = json.loads((version / "model.json").read_text())
    assert (meta["task"], meta["family"], meta["classes"]) == ("classification", "logistic_regression", [0, 1])
    assert meta["outputs"] == [{"name": "label", "type": "tensor(int64)", "shape": [-1]},
                               {"name": "probabilities", "type": "tensor(float)", "shape": [-1, 2]}]
    assert [i["name"] for i in meta["inputs"]] == list(data.FEATURES)
    for example in meta["examples"]:
        prediction = example["prediction"]
        assert set(prediction) == {"label", "probabilities"}
        assert prediction["label"] in (0, 1) and len(prediction["probabilities"]) == 2
        assert abs(sum(prediction["probabilities"]) - 1) < 1e-6
        assert prediction["label"] == int(prediction["probabilities"][1] > prediction["probabilities"][0])
    validation = meta["metrics"]["validation"]
    assert {"accuracy", "roc_auc", "log_loss", "base_rate", "rows"} <= set(validation)
    assert validation["roc_auc"] > 0.65  # tipping depends on the trip: there is something to learn
    assert validation["accuracy"] > max(validation["base_rate"], 1 - validation["base_rate"])
    assert meta["parity"]["rows"] == validation["rows"]
    assert meta["parity"]["label_agreement"] == 1.0
    assert meta["parity"]["max_proba_abs_error"] <= agreement.PROBA_ATOL


def test_numeric_inputs_carry_their_range(repository):
    for name in conftest.MODELS:
        meta = json.loads((repository.models / name / "1" / "model.json").read_text())
        ranges = {i["name"]: i.get("range") for i in meta["inputs"]}
        assert ranges == {"PULocationID": None, "DOLocationID": None, "trip_distance": [0.0, 1000.0],
                          "pickup_hour": None, "pickup_weekday": None}


def test_edge_rows_reach_the_range_ends_and_unseen_categories(repository):
    held_out = pd.read_parquet(repository.build / "trip_duration" / "validation.parquet").drop(columns=[data.TARGET])
    edges = export.edge_rows(held_out, {"trip_distance": [0.0, 1000.0]}, n=50)
    assert len(edges) == 50 * 6
    assert list(edges.dtypes) == list(held_out.dtypes)
    assert {0.0, 1000.0} <= set(edges["trip_distance"])
    assert {0, 266} <= set(edges["PULocationID"]) | set(edges["DOLocationID"])
    assert 24 in set(edges["pickup_hour"]) and 7 in set(edges["pickup_weekday"])


def test_a_classifier_graph_with_zipmap_is_refused(repository, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "convert", lambda model, example: to_onnx(model, example.iloc[:1]))
    models = tmp_path / "models"
    code = main(["export", "--name", "tip_given", "--build", str(repository.build), "--models", str(models)])
    assert code == 1
    assert "convert with ZipMap off" in capsys.readouterr().err
    assert not models.exists() or not any(models.rglob("*"))
