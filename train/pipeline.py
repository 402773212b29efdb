"""The sklearn pipelines, one per model family.

Every transformation lives inside the Pipeline so that skl2onnx puts it in
the ONNX graph: the server receives raw fields and nothing is computed
outside the model.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .data import CATEGORICAL, NUMERIC

FAMILIES = ("linear", "ridge", "random_forest", "hist_gradient_boosting")


def build(family: str, seed: int = 0) -> Pipeline:
    """Return an unfitted pipeline for `family` (one of FAMILIES)."""
    if family == "linear":
        # Full one-hot blocks plus an intercept are collinear: least squares
        # then picks huge cancelling coefficients that float32 inference
        # cannot add up exactly. Dropping one level per block removes that.
        return _pipeline(LinearRegression(), linear=True, drop="first")
    if family == "ridge":
        return _pipeline(Ridge(alpha=1.0), linear=True)
    if family == "random_forest":
        # Depth and leaf size bound the ONNX file (and its load time) while
        # keeping most of the accuracy of fully grown trees.
        return _pipeline(
            RandomForestRegressor(
                n_estimators=40, max_depth=18, min_samples_leaf=4, max_features=0.3, n_jobs=-1, random_state=seed
            ),
            linear=False,
        )
    if family == "hist_gradient_boosting":
        return _pipeline(HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, random_state=seed), linear=False)
    raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")


def _pipeline(model, linear: bool, drop: str | None = None) -> Pipeline:
    # Zones, hours and weekdays are categories; unseen ones (a zone missing
    # from the training month) encode as all zeros rather than failing, which
    # with drop="first" means "like the first level".
    # Linear models train on a sparse one-hot matrix (a month of yellow trips
    # is millions of rows); skl2onnx converts tree models only from dense
    # input, and trees need no scaling.
    categories = OneHotEncoder(handle_unknown="ignore", drop=drop, sparse_output=linear, dtype="float32")
    numbers = StandardScaler() if linear else "passthrough"
    features = ColumnTransformer([("categories", categories, CATEGORICAL), ("numbers", numbers, NUMERIC)])
    return Pipeline([("features", features), ("model", model)])
