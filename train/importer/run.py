"""python -m train import: a fitted pipeline someone brings, checked and published.

    python -m train import --pipeline lin_reg.bin --sample records.jsonl --name course_duration

1. load the pipeline (joblib or pickle: loading runs code from the file) and
   the sample; refuse, in one line, a step that cannot be converted, an
   unfitted one, a sample that does not match the pipeline;
2. convert (convert.py) and run the parity gate: ONNX Runtime against the
   pipeline's own predict (and predict_proba) on every sample row, then on
   edge rows derived from them (each number at the ends of its range, unseen
   strings, missing values where the pipeline imputes);
3. publish the next version atomically, as `train export` does: model.onnx,
   model.json (inputs from the sample, ranges, examples), pipeline.joblib and
   reference.parquet (the sample with its predictions: the monitor's reference).
Nothing is written unless every row is within the bounds of agreement.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from .. import export
from ..data import CLASSIFICATION
from .. import repository
from ..fit import TRAINING_FILE, VALIDATION_FILE, log, reference_positions
from ..repository import MODEL_FILE, PIPELINE_FILE, REFERENCE_FILE
from . import convert, load
from .load import ImportRefused

EDGE_ROWS = 200
UNSEEN = "__unseen_by_training__"
LIBRARIES = ["xgboost-cpu", "lightgbm", "onnxmltools"]


def import_pipeline(pipeline_path: Path, sample_path: Path, name: str, models_dir: Path,
                    task: str | None = None, build_dir: Path | None = None) -> Path:
    """Convert, check and publish; return the new version's directory.

    With build_dir, the sample is also kept as build_dir/<name>/validation.parquet
    beside a training.json naming its features, where the Locust users and
    `make bench` read request rows (loadtest/samples.py).
    """
    started = time.perf_counter()
    model = load.load_pipeline(pipeline_path)
    task = load.task_of(model, task)
    sample = load.load_sample(sample_path)
    steps = " -> ".join(type(step).__name__ for _, step in model.steps)
    log("load", f"{steps} ({task}) from {pipeline_path}; {len(sample):,} sample rows, "
        f"{len(sample.columns)} field(s) from {sample_path}")

    sample = _match_columns(model, sample)
    if type(model.steps[0][1]).__name__ == "DictVectorizer":
        # a DictVectorizer takes every number as a float feature: integers in the records are doubles too
        sample = sample.astype({c: np.float64 for c in sample.columns if sample[c].dtype.kind in "iu"})
    X = convert.typed(sample)
    predictor = load.dict_pipeline(model)
    _predicts(predictor, X, task)
    nullable = nullable_columns(model, X)
    if nullable:
        log("inputs", f"nullable (JSON null is a missing value): {', '.join(nullable)}")

    try:
        onnx_model = convert.convert(model, X)
    except Exception as exc:  # a converter's own refusal (skl2onnx, onnxmltools, trees.py): say it in one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ImportRefused(f"converting {steps} to ONNX failed: {type(exc).__name__}: {message}") from None
    onnx_bytes = onnx_model.SerializeToString()
    opsets = ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in onnx_model.opset_import)
    log("convert", f"{len(onnx_model.graph.input)} input(s), {len(onnx_bytes) / 1e6:.2f} MB, opsets {opsets}")

    parity = export.check_against_sklearn(onnx_bytes, predictor, X, task, what="sample rows")
    _log_parity(parity, len(X), "sample rows")
    ranges = {c: [float(X[c].min()), float(X[c].max())] for c in X.columns
              if X[c].dtype.kind in "if" and X[c].notna().any()}
    edges = edge_rows(X, ranges, nullable, predictor)
    edge_parity = export.check_against_sklearn(onnx_bytes, predictor, edges, task, what="edge rows")
    _log_parity(edge_parity, len(edges), "edge rows (range ends, unseen strings, missing values)")

    training = {
        "name": name,
        "task": task,
        "family": steps,
        "target": {"name": None, **({"classes": [int(c) for c in model.steps[-1][1].classes_]}
                                    if task == CLASSIFICATION else {})},
        "metrics": {},
        "ranges": ranges,
        "data": {"sample": _fingerprint(sample_path, rows=len(X)), "pipeline": _fingerprint(pipeline_path)},
    }
    metadata = export.describe(onnx_model, onnx_bytes, training, X, predictor, parity)
    metadata = _json_safe(metadata)
    for spec in metadata["inputs"]:
        if spec["name"] in nullable:
            spec["nullable"] = True
    metadata["parity"]["edge_rows"] = edge_parity.rows
    metadata["libraries"].update({lib: _version(lib) for lib in LIBRARIES if _version(lib)})

    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / PIPELINE_FILE
        joblib.dump(predictor, saved)
        # The sample stands in for training rows: the monitor's reference data.
        reference = export.reference_frame(onnx_bytes, X.iloc[reference_positions(len(X))], task)
        path = repository.publish(Path(models_dir) / name, {MODEL_FILE: onnx_bytes, PIPELINE_FILE: saved,
                                                            REFERENCE_FILE: export.parquet_bytes(reference)}, metadata)
    if build_dir is not None:
        keep_sample(Path(build_dir) / name, X, training)
    log("import", f"published {path} in {time.perf_counter() - started:.1f}s")
    return path


def keep_sample(out: Path, X: pd.DataFrame, training: dict) -> None:
    """The sample rows as request rows for load tests: validation.parquet and training.json's features."""
    out.mkdir(parents=True, exist_ok=True)
    X.to_parquet(out / VALIDATION_FILE)
    summary = {**training, "features": list(X.columns), "source": "python -m train import"}
    (out / TRAINING_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def _match_columns(model: Pipeline, sample: pd.DataFrame) -> pd.DataFrame:
    """The sample's columns in the order the pipeline was fitted with; refuse missing or extra ones."""
    first = model.steps[0][1]
    if type(first).__name__ == "DictVectorizer":
        return sample  # the keys are checked against the vocabulary when converting
    expected = getattr(model, "feature_names_in_", None)
    if expected is None:
        n = getattr(model, "n_features_in_", None)
        if n is not None and n != len(sample.columns):
            raise ImportRefused(f"the sample has {len(sample.columns)} columns, the pipeline was fitted on {n}")
        return sample
    expected = list(expected)
    missing = [c for c in expected if c not in sample.columns]
    extra = [c for c in sample.columns if c not in expected]
    if missing or extra:
        raise ImportRefused(f"the sample's columns do not match the pipeline's: missing {missing}, unexpected {extra} "
                            f"(the pipeline was fitted on {expected})")
    return sample[expected]


def _predicts(predictor, X: pd.DataFrame, task: str) -> None:
    """The pipeline's own predict must run on the sample; say so in one line if it does not."""
    try:
        predictions = np.asarray(predictor.predict(X))
        if task == CLASSIFICATION:
            predictor.predict_proba(X.iloc[:5])
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImportRefused(f"the pipeline's predict fails on the sample: {type(exc).__name__}: {message}") from None
    if predictions.ndim > 1 and predictions.shape[1] > 1:
        raise ImportRefused(f"the pipeline predicts {predictions.shape[1]} values per row: the server serves one "
                            "target (or one label) per row")


def nullable_columns(model: Pipeline, X: pd.DataFrame) -> list[str]:
    """Float columns that may be missing: those the pipeline imputes (a SimpleImputer reads them
    first), and those missing in the sample rows the pipeline predicted (HistGradientBoosting
    takes NaN itself). The parity gate checks both, with every such column missing."""
    floats = [c for c in X.columns if X[c].dtype.kind == "f"]
    first = model.steps[0][1]
    imputed = []
    if _starts_with_imputer(first):
        imputed = floats
    elif type(first).__name__ == "ColumnTransformer":
        for _, transformer, selected in first.transformers_:
            if _starts_with_imputer(transformer):
                picked = np.atleast_1d(selected)
                imputed += list(X.columns[picked]) if picked.dtype.kind in "iub" else list(picked)
    return [c for c in floats if c in imputed or X[c].isna().any()]


def _starts_with_imputer(step) -> bool:
    if isinstance(step, Pipeline):
        step = step.steps[0][1]
    return type(step).__name__ == "SimpleImputer"


def edge_rows(X: pd.DataFrame, ranges: dict[str, list[float]], nullable: list[str], predictor) -> pd.DataFrame:
    """Sample rows pushed to what the server accepts but the sample rarely has.

    Each number at both ends of its range, each string column with a value
    never seen in training, each nullable column missing. A variant sklearn
    itself refuses (handle_unknown="error") is left out and said so.
    """
    base = X.iloc[np.linspace(0, len(X) - 1, num=min(EDGE_ROWS, len(X))).astype(int)].reset_index(drop=True)
    variants = [base]
    for column, (low, high) in ranges.items():
        for value in (low, high):
            variants.append(base.assign(**{column: np.asarray([value] * len(base)).astype(X[column].dtype)}))
    for column in X.columns:
        if X[column].dtype == object:
            variants.append(base.assign(**{column: UNSEEN}))
    for column in nullable:
        variants.append(base.assign(**{column: np.nan}))
    kept = []
    for variant in variants:
        try:
            predictor.predict(variant.iloc[:1])
        except Exception as exc:
            log("check", f"sklearn refuses an edge row ({type(exc).__name__}): {str(exc).splitlines()[0][:120]}; "
                "those edge rows are left out")
            continue
        kept.append(variant)
    return pd.concat(kept, ignore_index=True)


def _log_parity(parity, rows: int, what: str) -> None:
    if parity.task == CLASSIFICATION:
        log("check", f"ONNX Runtime matches sklearn on {rows:,} {what}: labels {parity.label_agreement:.2%} identical, "
            f"max probability error {parity.max_proba_abs_error:.3g}")
    else:
        log("check", f"ONNX Runtime matches sklearn on {rows:,} {what}: max abs error {parity.max_abs_error:.3g}, "
            f"max rel error {parity.max_rel_error:.3g} (|error| / |sklearn|: {parity.max_true_rel_error:.3g})")


def _fingerprint(path: Path, **extra) -> dict:
    path = Path(path)
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), **extra}


def _version(package: str) -> str | None:
    try:
        return package_version(package)
    except PackageNotFoundError:
        return None


def _json_safe(value):
    """NaN (a missing value in an example) as JSON null; model.json must be strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value

