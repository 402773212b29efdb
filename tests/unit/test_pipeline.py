"""The model families: each trains on float32 features, and the family decides the task."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse

from topology import ROOT
from train import data, pipeline


def test_every_family_has_a_task():
    assert set(pipeline.TASKS.values()) == {data.REGRESSION, data.CLASSIFICATION}
    assert [f for f in pipeline.FAMILIES if pipeline.task_of(f) == data.CLASSIFICATION] == [
        "logistic_regression", "random_forest_classifier", "hist_gradient_boosting_classifier"]
    with pytest.raises(ValueError, match="unknown model family 'xgboost'"):
        pipeline.task_of("xgboost")


@pytest.mark.parametrize("family", pipeline.FAMILIES)
def test_every_family_trains_on_the_float32_values_onnx_runtime_sees(family, trips_file):
    """Trees split on the matrix's values; ONNX Runtime compares float32 inputs
    with float32 thresholds. So the matrix must be float32, and the distance
    column must hold exactly the float32 distance of the request."""
    task = pipeline.task_of(family)
    X, _ = data.make_features(data.load_trips([trips_file], task).frame, task)
    X = X.iloc[:2000]
    assert X["trip_distance"].dtype == np.float32
    features = pipeline.build(family)[:-1]
    matrix = features.fit_transform(X)
    assert matrix.dtype == np.float32
    distance = matrix[:, -1].toarray().ravel() if scipy.sparse.issparse(matrix) else matrix[:, -1]
    scaled = family in ("linear", "ridge", "logistic_regression")
    if not scaled:  # trees see the distance itself
        assert np.array_equal(distance, X["trip_distance"].to_numpy())


def test_the_makefile_reads_the_lists_without_third_party_packages():
    """`python -m train families | classifiers | name FAMILY` answer from
    train/tasks.py alone: the Makefile asks before the venv exists."""
    blocked = "import sys; sys.modules.update(dict.fromkeys(['numpy', 'pandas', 'sklearn', 'onnx'])); "

    def ask(*args: str) -> str:
        code = blocked + f"from train.__main__ import main; sys.exit(main({list(args)!r}))"
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert ask("families").split() == list(pipeline.FAMILIES)
    assert ask("classifiers").split() == [f for f in pipeline.FAMILIES if pipeline.task_of(f) == data.CLASSIFICATION]
    assert ask("name", "random_forest") == "trip_duration" and ask("name", "logistic_regression") == "tip_given"
