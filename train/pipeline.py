"""The sklearn pipelines, one per model family.

Every transformation lives inside the Pipeline so that skl2onnx puts it in
the ONNX graph: the server receives raw fields and nothing is computed
outside the model. The family decides the task: regressors predict the trip
duration, classifiers whether a card payment includes a tip.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .data import CATEGORICAL, NUMERIC
from .tasks import CLASSIFICATION, FAMILIES, REGRESSION, TASKS, task_of  # noqa: F401  (pipeline.FAMILIES …)


def build(family: str, seed: int = 0) -> Pipeline:
    """Return an unfitted pipeline for `family` (one of FAMILIES)."""
    task_of(family)  # refuses unknown families
    if family == "linear":
        # Full one-hot blocks plus an intercept are collinear: least squares
        # then picks huge cancelling coefficients that float32 inference
        # cannot add up exactly. Dropping one level per block removes that.
        return _pipeline(LinearRegression(), sparse=True, scale=True, drop="first")
    if family == "ridge":
        return _pipeline(Ridge(alpha=1.0), sparse=True, scale=True)
    if family == "logistic_regression":
        # The L2 penalty keeps the coefficients of full one-hot blocks small.
        return _pipeline(LogisticRegression(C=1.0, max_iter=1000), sparse=True, scale=True)
    if family == "random_forest":
        # Depth and leaf size bound the ONNX file (and its load time) while
        # keeping most of the accuracy of fully grown trees.
        return _pipeline(
            RandomForestRegressor(
                n_estimators=40, max_depth=18, min_samples_leaf=4, max_features=0.3, n_jobs=-1, random_state=seed
            ),
            sparse=False,
        )
    if family == "random_forest_classifier":
        return _pipeline(
            RandomForestClassifier(
                n_estimators=40, max_depth=18, min_samples_leaf=4, max_features=0.3, n_jobs=-1, random_state=seed
            ),
            sparse=False,
        )
    if family == "gradient_boosting":
        # GradientBoostingRegressor grows exact trees on one core. On a sparse
        # one-hot matrix its splitter only visits the non-zero entries, far
        # faster than dense; half of the rows per tree (stochastic boosting)
        # halves the work again (training times: BENCHMARKS.md).
        return _pipeline(
            GradientBoostingRegressor(
                n_estimators=200, max_depth=5, learning_rate=0.1, subsample=0.5, random_state=seed
            ),
            sparse=True,
        )
    if family == "hist_gradient_boosting":
        return _pipeline(HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, random_state=seed),
                         sparse=False)
    if family == "hist_gradient_boosting_classifier":
        return _pipeline(HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed),
                         sparse=False)
    raise AssertionError(f"no pipeline for family {family!r}")


def _pipeline(model, sparse: bool, scale: bool = False, drop: str | None = None) -> Pipeline:
    # Zones, hours and weekdays are categories; unseen ones (a zone missing
    # from the training month) encode as all zeros rather than failing, which
    # with drop="first" means "like the first level".
    # Linear models and GradientBoosting train on a sparse one-hot matrix (a
    # month of yellow trips is millions of rows); HistGradientBoosting only
    # takes dense input. Trees need no scaling. Every column is float32, so
    # trees split on the very values ONNX Runtime compares in float32.
    categories = OneHotEncoder(handle_unknown="ignore", drop=drop, sparse_output=sparse, dtype="float32")
    numbers = StandardScaler() if scale else "passthrough"
    features = ColumnTransformer([("categories", categories, CATEGORICAL), ("numbers", numbers, NUMERIC)])
    return Pipeline([("features", features), ("model", model)])
