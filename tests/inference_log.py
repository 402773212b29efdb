"""Inference log records as the replicas write them (docs/monitoring.md), for
tests that need a log without running replicas with the log on, and trips
drawn from the training distribution or a shifted one.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from train import data, fit, synth


def rfc3339(t: datetime) -> str:
    """RFC 3339 UTC with nanoseconds, as Go's time.RFC3339Nano writes it."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def event(kind: str, replica: str, t: datetime, request: str, model: str, version: int, data_: dict,
          variant: str | None = None) -> dict:
    record = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"skl2go/{replica}", "type": kind,
              "time": rfc3339(t), "datacontenttype": "application/json", "requestid": request, "model": model,
              "version": version, "latencyms": 0.4, "data": data_}
    if variant:
        record["variant"] = variant
    return record


def write_log(state: Path, replica: str, X: pd.DataFrame, predictions, model: str, version: int,
              start: datetime, batch: int = 50, probabilities=None, actuals=None) -> list[str]:
    """Append X's rows as requests of `batch` rows each, one second apart, to
    <state>/inference/<replica>/inference-0.jsonl (and their actuals, when
    given, as org.skl2go.actual records). Returns the request ids."""
    out = Path(state) / "inference" / replica
    out.mkdir(parents=True, exist_ok=True)
    ids = []
    with open(out / "inference-0.jsonl", "a") as f:
        for k, lo in enumerate(range(0, len(X), batch)):
            rows = X.iloc[lo:lo + batch]
            request = f"{replica}-{uuid.uuid4().hex[:12]}"
            ids.append(request)
            outputs = {"predictions": [p.item() if hasattr(p, "item") else p for p in predictions[lo:lo + batch]]}
            if probabilities is not None:
                outputs["probabilities"] = [list(map(float, p)) for p in probabilities[lo:lo + batch]]
            inputs = {c: [v.item() if hasattr(v, "item") else v for v in rows[c]] for c in rows.columns}
            t = start + timedelta(seconds=k)
            f.write(json.dumps(event("org.skl2go.inference", replica, t, request, model, version,
                                     {"inputs": inputs, "outputs": outputs})) + "\n")
            if actuals is not None:
                for row, actual in enumerate(actuals[lo:lo + batch]):
                    f.write(json.dumps(event("org.skl2go.actual", replica, t, request, model, version,
                                             {"requestid": request, "key": f"{request}/{row}", "row": row,
                                              "actual": float(actual)})) + "\n")
    return ids


def unseen_training_rows(trips_file: Path, task: str = data.REGRESSION, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Training rows of a model fitted on trips_file that its reference sample
    left out: traffic from the training distribution the monitor has not seen."""
    X, y = data.make_features(data.load_trips([trips_file], task).frame, task)
    X_train, y_train = data.split_latest(X, y)[:2]
    keep = np.ones(len(X_train), dtype=bool)
    keep[fit.reference_positions(len(X_train), seed)] = False
    # Shuffled: the rows are in pickup order, and the first ones alone are a few days' weekdays.
    order = np.random.default_rng([seed, 6]).permutation(int(keep.sum()))
    return X_train[keep].iloc[order].reset_index(drop=True), y_train[keep].iloc[order].reset_index(drop=True)


def shift(X: pd.DataFrame, y: pd.Series | None = None) -> tuple[pd.DataFrame, pd.Series | None]:
    """Trips of a shifted month: 2.5 times longer (so are their durations) and
    starting 12 hours later in the day."""
    X = X.assign(trip_distance=(X["trip_distance"] * 2.5).astype(X["trip_distance"].dtype),
                 pickup_hour=(X["pickup_hour"] + 12) % 24)
    return X, (None if y is None else (y * 2.5).clip(upper=data.MAX_MINUTES))


def shifted_file(path: Path, rows: int, seed: int, month: str = "2021-03") -> Path:
    """A TLC green file of a shifted month (as shift()), from the same city
    as `seed`'s training trips, for the retraining loop."""
    table = synth.generate(rows, seed, month).to_pandas()
    length = table["lpep_dropoff_datetime"] - table["lpep_pickup_datetime"]
    table["trip_distance"] = np.round(table["trip_distance"] * 2.5, 2)
    table["lpep_pickup_datetime"] = table["lpep_pickup_datetime"] + pd.Timedelta(hours=12)
    table["lpep_dropoff_datetime"] = table["lpep_pickup_datetime"] + length * 2.5
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)
    return path
