"""Fit one model family on trip files and keep what export needs.

Writes build/<name>/: the fitted pipeline (joblib), the held-out validation
rows (parquet, features and target) and training.json (family, metrics,
data fingerprint). Export reads exactly these.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from . import data, pipeline

PIPELINE_FILE = "pipeline.joblib"
VALIDATION_FILE = "validation.parquet"
TRAINING_FILE = "training.json"


def log(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", flush=True)


def fit(paths: list[str], family: str, name: str, build_dir: Path, seed: int = 0) -> dict:
    """Train `family` on the trips in `paths`; return the training summary."""
    if family not in pipeline.FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(pipeline.FAMILIES)}")
    started = time.perf_counter()
    trips = data.load_trips(paths)
    log("load", f"{len(trips.frame):,} trips from {len(trips.files)} file(s) "
        f"({', '.join(f['schema'] for f in trips.files)}) in {time.perf_counter() - started:.1f}s")

    X, y = data.make_features(trips.frame)
    dropped = len(trips.frame) - len(X)
    log("features", f"{len(X):,} trips kept, {dropped:,} dropped "
        f"(duration outside {data.MIN_MINUTES:g}-{data.MAX_MINUTES:g} min or missing fields)")
    if len(X) < 100:
        raise data.NotTripData(f"only {len(X)} usable trips in {', '.join(map(str, paths))}: need at least 100")
    X_train, y_train, X_val, y_val = data.split_latest(X, y)
    log("split", f"{len(X_train):,} training trips, {len(X_val):,} latest trips held out for validation")

    model = pipeline.build(family, seed=seed)
    t = time.perf_counter()
    model.fit(X_train, y_train)
    log("fit", f"{family} fitted in {time.perf_counter() - t:.1f}s")

    metrics = {
        "train": regression_metrics(y_train, model.predict(X_train)),
        "validation": regression_metrics(y_val, model.predict(X_val)),
    }
    v = metrics["validation"]
    log("metrics", f"validation RMSE {v['rmse']:.3f} min, MAE {v['mae']:.3f} min, R² {v['r2']:.4f}")

    out = Path(build_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / PIPELINE_FILE)
    X_val.assign(**{data.TARGET: y_val}).to_parquet(out / VALIDATION_FILE, index=False)
    summary = {
        "name": name,
        "family": family,
        "task": "regression",
        "target": {"name": data.TARGET, "unit": "minutes", "kept_range": [data.MIN_MINUTES, data.MAX_MINUTES]},
        "features": data.FEATURES,
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
    }
    (out / TRAINING_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    log("done", f"wrote {out} in {time.perf_counter() - started:.1f}s")
    return summary


def regression_metrics(y_true: pd.Series, y_pred: np.ndarray) -> dict:
    return {
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
        "rows": int(len(y_true)),
    }
