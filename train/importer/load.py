"""Reading what a data scientist brings: the fitted pipeline and a sample.

The pipeline file is a joblib or pickle file holding a fitted estimator, a
Pipeline, or a tuple/list of fitted steps applied in order (the MLOps
course saves `(dv, model)` with pickle.dump). Unpickling runs code from the
file: only files the user names are loaded.

The sample (parquet, CSV or JSON Lines) holds request records, exactly what
the pipeline's `predict` takes: a DataFrame's columns, or the keys of the
dicts a DictVectorizer takes.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.validation import check_is_fitted

from . import supported


class ImportRefused(ValueError):
    """The pipeline or the sample cannot be imported; the message says why in one line."""


def load_pipeline(path: Path) -> Pipeline:
    """The fitted pipeline in `path`, as a Pipeline (a lone estimator or a tuple of steps becomes one)."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"{path}: no such file")
    try:
        obj = joblib.load(path)  # reads plain pickles too
    except Exception as exc:  # anything a corrupt or foreign file makes the unpickler raise
        raise ImportRefused(f"{path}: not a joblib or pickle file ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, Pipeline):
        model = obj
    elif isinstance(obj, (tuple, list)) and obj and all(hasattr(step, "fit") for step in obj):
        model = make_pipeline(*obj)
    elif hasattr(obj, "predict"):
        model = make_pipeline(obj)
    else:
        raise ImportRefused(f"{path}: holds a {type(obj).__name__}, not a fitted estimator, Pipeline or "
                            "tuple/list of fitted steps")
    check_steps(model)
    return model


def check_steps(model: Pipeline) -> None:
    """Refuse a step that is not in the supported table or not fitted, naming it and its class."""
    *transformers, (name, estimator) = model.steps
    for step, transformer in transformers:
        _check(transformer, step)
    _check_estimator(estimator, name)
    first = transformers[0][1] if transformers else None
    if any(type(t).__name__ == "DictVectorizer" for _, t in transformers[1:]):
        raise ImportRefused("a DictVectorizer must be the pipeline's first step (it reads the request records)")
    if first is not None and type(first).__name__ == "DictVectorizer" and first.separator != "=":
        raise ImportRefused(f"DictVectorizer with separator {first.separator!r}: only '=' is supported")


def _check(step, where: str) -> None:
    cls = type(step).__name__
    if cls == "FunctionTransformer" and step.func is None and step.inverse_func is None:
        return  # what a fitted ColumnTransformer holds for 'passthrough': the identity
    if isinstance(step, str):
        if step not in supported.SPECIAL:
            raise ImportRefused(f"step {where!r}: {step!r} is not a transformer; {supported.summary()}")
        return
    if cls not in supported.TRANSFORMERS or not type(step).__module__.startswith(supported.TRANSFORMERS[cls][0]):
        raise ImportRefused(f"step {where!r} ({cls}, from {type(step).__module__}) cannot be converted to ONNX; "
                            f"{supported.summary()}")
    if cls == "Pipeline":
        for name, sub in step.steps:
            _check(sub, f"{where}/{name}")
        return
    _fitted(step, where)
    if cls == "ColumnTransformer":
        for name, sub, _ in step.transformers_:
            if name != "remainder" or sub != "drop":
                _check(sub, f"{where}/{name}")
    elif cls == "SimpleImputer":
        if step.add_indicator or not _is_nan(step.missing_values):
            raise ImportRefused(f"step {where!r} (SimpleImputer): only missing_values=np.nan without add_indicator "
                                "is supported")
        if np.asarray(step.statistics_).dtype.kind not in "iuf":
            raise ImportRefused(f"step {where!r} (SimpleImputer): only numeric columns are imputed, not strings")
        if np.isnan(np.asarray(step.statistics_, dtype=np.float64)).any():
            raise ImportRefused(f"step {where!r} (SimpleImputer): a column was empty at fit time (NaN statistic)")


def _check_estimator(estimator, where: str) -> None:
    cls = type(estimator).__name__
    if cls not in supported.ESTIMATORS or not type(estimator).__module__.startswith(supported.ESTIMATORS[cls][0]):
        raise ImportRefused(f"step {where!r} ({cls}, from {type(estimator).__module__}) cannot be converted to "
                            f"ONNX; {supported.summary()}")
    _fitted(estimator, where)
    if is_classifier(estimator):
        classes = np.asarray(estimator.classes_)
        if classes.dtype.kind not in "iub":
            raise ImportRefused(f"step {where!r} ({cls}): classes {classes.tolist()[:5]} are not integers; "
                                "the server answers integer labels: fit on integer-encoded classes")


def _fitted(step, where: str) -> None:
    try:
        check_is_fitted(step)
    except NotFittedError:
        raise ImportRefused(f"step {where!r} ({type(step).__name__}) is not fitted: import a fitted pipeline") from None


def _is_nan(value) -> bool:
    return isinstance(value, float) and np.isnan(value)


def task_of(model: Pipeline, task: str | None) -> str:
    """The task the final estimator solves; `task`, if given, must agree."""
    found = "classification" if is_classifier(model.steps[-1][1]) else "regression"
    if task is not None and task != found:
        raise ImportRefused(f"--task {task}, but the final step ({type(model.steps[-1][1]).__name__}) does {found}")
    return found


def load_sample(path: Path) -> pd.DataFrame:
    """The sample records as a DataFrame (one column per field), refusing an empty or unreadable one."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".jsonl", ".ndjson"):
            # json, not pd.read_json: that one reads the string "43_151" as the number 43151
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            rows = [json.loads(line) for line in lines]
            if not all(isinstance(row, dict) for row in rows):
                raise ImportRefused(f"{path}: each line of a JSON Lines sample is one record, a JSON object")
            frame = pd.DataFrame.from_records(rows)
        else:
            raise ImportRefused(f"{path}: a sample is .parquet, .csv or .jsonl (JSON Lines), "
                                f"not {suffix or 'a file without a suffix'}")
    except ImportRefused:
        raise
    except Exception as exc:
        raise ImportRefused(f"{path}: cannot read it as {suffix[1:]} ({type(exc).__name__}: {exc})") from None
    if frame.empty or len(frame.columns) == 0:
        raise ImportRefused(f"{path}: the sample is empty: give at least one record")
    for column in frame.columns:
        kind = frame[column].dtype.kind
        if kind == "O" or str(frame[column].dtype).startswith("str"):
            values = frame[column].dropna()
            if not values.map(lambda v: isinstance(v, str)).all():
                raise ImportRefused(f"{path}: column {column!r} mixes strings with other values")
            if len(values) < len(frame):
                raise ImportRefused(f"{path}: column {column!r} has missing strings: string inputs are required "
                                    "(only float columns may be missing)")
            frame[column] = frame[column].astype(object)
        elif kind == "b":
            frame[column] = frame[column].astype(np.int64)
        elif kind not in "iuf":
            raise ImportRefused(f"{path}: column {column!r} has type {frame[column].dtype}: "
                                "a sample holds numbers and strings only")
        elif kind in "iu":
            frame[column] = frame[column].astype(np.int64)
    return frame


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as the dicts a DictVectorizer takes (the course's `df.to_dict(orient="records")`)."""
    return frame.to_dict(orient="records")


def dict_pipeline(model: Pipeline) -> Pipeline:
    """`model` taking a DataFrame: a DictVectorizer pipeline gets a first step that makes records of rows.

    Saved as the version's pipeline.joblib, so that parity checks and the
    baseline server call `predict(DataFrame)` on every model alike.
    """
    if type(model.steps[0][1]).__name__ != "DictVectorizer":
        return model
    from sklearn.preprocessing import FunctionTransformer

    return Pipeline([("records", FunctionTransformer(records)), *model.steps])
