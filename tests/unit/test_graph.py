"""Graph rewrites at export: faster in ONNX Runtime, bit-identical results."""

from __future__ import annotations

import json

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from train import export, features, graph


def gathers(indices_a: list[int], indices_b: list[int]) -> onnx.ModelProto:
    """X [N, 1, 6] -> Gather(indices_a, axis -1) and Gather(indices_b, axis -1)."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1, 6])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1, None]) for n in ("A", "B")]
    inits = [numpy_helper.from_array(np.array(i, dtype=np.int64), n) for i, n in ((indices_a, "ia"), (indices_b, "ib"))]
    nodes = [helper.make_node("Gather", ["X", "ia"], ["A"], axis=-1, name="ga"),
             helper.make_node("Gather", ["X", "ib"], ["B"], axis=-1, name="gb")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], outs, inits), opset_imports=[helper.make_opsetid("", 13)],
                             ir_version=8)


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})


def test_contiguous_gathers_become_slices_with_identical_results():
    model = gathers([1, 2, 3, 4, 5], [0, 2, 3])  # drop="first"; and a gather that is no range
    simplified, rewritten = graph.simplify(model)
    assert rewritten == ["ga"]
    assert [n.op_type for n in simplified.graph.node] == ["Slice", "Gather"]
    assert "ia" not in {i.name for i in simplified.graph.initializer}  # the unused indices are gone
    x = np.random.default_rng(0).normal(size=(1000, 1, 6)).astype(np.float32)
    for got, want in zip(run(simplified, x), run(model, x)):
        assert got.shape == want.shape and np.array_equal(got, want)


def test_other_gathers_are_left_alone():
    for indices in ([2, 1], [1, 3], [-1, 0]):
        _, rewritten = graph.simplify(gathers(indices, [0, 2]))
        assert rewritten == []


def test_the_exported_linear_models_gather_coefficients_instead_of_one_hot(repository):
    for name in ("trip_duration", "tip_given"):  # drop="first" regression; classifier
        ops = [n.op_type for n in onnx.load(repository.models / name / "1" / "model.onnx").graph.node]
        assert "OneHotEncoder" not in ops and "Slice" not in ops, name
        assert ops.count("LabelEncoder") == 4 and ops.count("Gather") == 4, name


@pytest.mark.parametrize("name", ["trip_duration", "tip_given"])
def test_sparse_linear_answers_like_sklearn_on_unknown_and_dropped_categories(repository, name):
    """Every category column at an unknown value (handle_unknown="ignore":
    no term) and at its first level (dropped by drop="first" for linear)."""
    pipeline = joblib.load(repository.models / name / "1" / "pipeline.joblib")
    X = pd.read_parquet(repository.build / name / "validation.parquet")[list(features.FEATURES)].iloc[:500]
    encoder = pipeline.named_steps["features"].named_transformers_["categories"]
    assert encoder.handle_unknown == "ignore"
    unseen = {"PULocationID": 0, "DOLocationID": 266, "pickup_hour": 24, "pickup_weekday": 7}
    rows = [X]
    for k, column in enumerate(features.CATEGORICAL):
        rows.append(X.assign(**{column: np.int64(unseen[column])}))
        rows.append(X.assign(**{column: np.int64(encoder.categories_[k][0])}))
    rows = pd.concat(rows, ignore_index=True)
    onnx_bytes = (repository.models / name / "1" / "model.onnx").read_bytes()
    task = json.loads((repository.models / name / "1" / "model.json").read_text())["task"]
    assert export.check_against_sklearn(onnx_bytes, pipeline, rows, task).within_bound


def test_sparse_linear_leaves_other_graphs_alone(repository):
    model = onnx.load(repository.models / "trip_duration_hgb" / "1" / "model.onnx")
    rewritten, names = graph.sparse_linear(model)
    assert names == [] and rewritten.SerializeToString() == model.SerializeToString()
