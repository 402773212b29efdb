"""Fit one model family on trip files and keep what export needs.

Writes build/<name>/: the fitted pipeline (joblib), the held-out validation
rows (parquet, features and target), a sample of the training inputs (the
reference data the monitor compares traffic with) and training.json (family,
metrics, data fingerprint). Export reads exactly these.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, mean_squared_error, r2_score, roc_auc_score

from . import data, pipeline
from .repository import PIPELINE_FILE
from .tasks import REFERENCE_ROWS, REFERENCE_SAMPLE_FILE, TRAINING_FILE, VALIDATION_FILE


def log(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", flush=True)


def fit(paths: list[str], family: str, name: str | None, build_dir: Path, seed: int = 0) -> dict:
    """Train `family` on the trips in `paths`; return the training summary.

    The family decides the task; `name` defaults to the task's model name
    (trip_duration or tip_given).
    """
    task = pipeline.task_of(family)
    name = name or data.DEFAULT_NAMES[task]
    started = time.perf_counter()
    trips = data.load_trips(paths, task)
    log("load", f"{len(trips.frame):,} trips from {len(trips.files)} file(s) "
        f"({', '.join(f['schema'] for f in trips.files)}) in {time.perf_counter() - started:.1f}s")

    X, y = data.make_features(trips.frame, task)
    dropped = len(trips.frame) - len(X)
    distance = data.RANGES["trip_distance"]
    log("features", f"{len(X):,} trips kept, {dropped:,} dropped (duration outside "
        f"{data.MIN_MINUTES:g}-{data.MAX_MINUTES:g} min, distance outside {distance[0]:g}-{distance[1]:g} miles, "
        f"missing fields{', not paid by card' if task == data.CLASSIFICATION else ''})")
    if len(X) < 100:
        raise data.NotTripData(f"only {len(X)} usable trips in {', '.join(map(str, paths))}: need at least 100")
    X_train, y_train, X_val, y_val = data.split_latest(X, y)
    log("split", f"{len(X_train):,} training trips, {len(X_val):,} latest trips held out for validation")
    if task == data.CLASSIFICATION and y_train.nunique() < 2:
        raise data.NotTripData(f"every training trip has {data.TIP_TARGET} = {y_train.iloc[0]}: "
                               "a classifier needs trips with and without tips")

    model = pipeline.build(family, seed=seed)
    t = time.perf_counter()
    model.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - t
    log("fit", f"{family} fitted in {fit_seconds:.1f}s")

    if task == data.CLASSIFICATION:
        metrics = {"train": classification_metrics(y_train, model.predict_proba(X_train)),
                   "validation": classification_metrics(y_val, model.predict_proba(X_val))}
        v = metrics["validation"]
        log("metrics", f"validation accuracy {v['accuracy']:.4f} (base rate {v['base_rate']:.4f}), "
            f"ROC AUC {v['roc_auc']:.4f}, log loss {v['log_loss']:.4f}")
        target = {"name": data.TIP_TARGET, "meaning": "tip_amount > 0 on a card payment (payment_type 1)",
                  "classes": [int(c) for c in model.classes_]}
    else:
        metrics = {"train": regression_metrics(y_train, model.predict(X_train)),
                   "validation": regression_metrics(y_val, model.predict(X_val))}
        v = metrics["validation"]
        log("metrics", f"validation RMSE {v['rmse']:.3f} min, MAE {v['mae']:.3f} min, R² {v['r2']:.4f}")
        target = {"name": data.TARGET, "unit": "minutes", "kept_range": [data.MIN_MINUTES, data.MAX_MINUTES]}

    out = Path(build_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / PIPELINE_FILE)
    X_val.assign(**{target["name"]: y_val}).to_parquet(out / VALIDATION_FILE, index=False)
    reference_sample(X_train, seed).to_parquet(out / REFERENCE_SAMPLE_FILE, index=False)
    summary = {
        "name": name,
        "family": family,
        "task": task,
        "target": target,
        "features": data.FEATURES,
        "ranges": {column: list(bounds) for column, bounds in data.RANGES.items()},
        "metrics": metrics,
        "data": {
            "fingerprint": data.fingerprint(trips.files),
            "files": trips.files,
            "rows_read": len(trips.frame),
            "rows_used": len(X),
            "rows_train": len(X_train),
            "rows_validation": len(X_val),
        },
        "seed": seed,
        "fit_seconds": round(fit_seconds, 2),
    }
    (out / TRAINING_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    log("done", f"wrote {out} in {time.perf_counter() - started:.1f}s")
    return summary


def reference_sample(X: pd.DataFrame, seed: int = 0, rows: int = REFERENCE_ROWS) -> pd.DataFrame:
    """At most `rows` training rows, drawn without replacement by the seed and
    kept in training order: the same data and seed give the same sample."""
    return X.iloc[reference_positions(len(X), seed, rows)].reset_index(drop=True)


def reference_positions(n: int, seed: int = 0, rows: int = REFERENCE_ROWS) -> np.ndarray:
    """The positions reference_sample keeps out of n training rows."""
    if n <= rows:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 5]).choice(n, size=rows, replace=False))


def regression_metrics(y_true: pd.Series, y_pred: np.ndarray) -> dict:
    return {
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
        "rows": int(len(y_true)),
    }


def classification_metrics(y_true: pd.Series, proba: np.ndarray) -> dict:
    """Accuracy, ROC AUC and log loss of the positive class (1), and its base rate."""
    return {
        "accuracy": float(accuracy_score(y_true, proba.argmax(axis=1))),
        "roc_auc": float(roc_auc_score(y_true, proba[:, 1])),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "base_rate": float(np.mean(y_true)),
        "rows": int(len(y_true)),
    }
