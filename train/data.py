"""Load NYC TLC trip files and turn them into features and a target.

Green files name their clock columns lpep_*, yellow files tpep_*; both have
the zone and distance columns. The model predicts the trip duration in
minutes from what is known when a trip starts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

# The columns every TLC-shaped file must have, besides its two clock columns.
TRIP_COLUMNS = ["PULocationID", "DOLocationID", "trip_distance"]
# Optional columns carried along for other tasks (e.g. "was a tip given").
EXTRA_COLUMNS = ["payment_type", "tip_amount"]
CLOCKS = {
    "green": ("lpep_pickup_datetime", "lpep_dropoff_datetime"),
    "yellow": ("tpep_pickup_datetime", "tpep_dropoff_datetime"),
}

# The model's inputs, in order, with the dtype each has in training and in the
# ONNX graph. Numbers are float32 so that sklearn and ONNX Runtime compare the
# very same values against tree thresholds.
FEATURES: dict[str, str] = {
    "PULocationID": "int64",
    "DOLocationID": "int64",
    "trip_distance": "float32",
    "pickup_hour": "int64",
    "pickup_weekday": "int64",
}
CATEGORICAL = ["PULocationID", "DOLocationID", "pickup_hour", "pickup_weekday"]
NUMERIC = ["trip_distance"]
TARGET = "duration_minutes"
MIN_MINUTES, MAX_MINUTES = 1.0, 60.0


class NotTripData(ValueError):
    """A file that is not a TLC trip file (missing columns, unreadable)."""


@dataclass
class Trips:
    """Trips from one or more files, with the clock columns renamed."""

    frame: pd.DataFrame  # pickup_datetime, dropoff_datetime, TRIP_COLUMNS, [EXTRA_COLUMNS]
    files: list[dict]  # path, schema, rows, sha256 of each file read


def load_trips(paths: list[str | Path]) -> Trips:
    """Read TLC parquet files (green or yellow, any mix) into one frame."""
    if not paths:
        raise NotTripData("no trip files given")
    frames, files = [], []
    for path in map(Path, paths):
        if not path.is_file():
            raise NotTripData(f"{path}: no such file")
        try:
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises several types for non-parquet input
            raise NotTripData(f"{path}: not a parquet file ({exc})") from exc
        kind = next((k for k, (pick, _) in CLOCKS.items() if pick in names), None)
        if kind is None:
            raise NotTripData(
                f"{path}: not a TLC trip file: missing column lpep_pickup_datetime "
                f"(green) or tpep_pickup_datetime (yellow)"
            )
        pick, drop = CLOCKS[kind]
        missing = [c for c in [drop, *TRIP_COLUMNS] if c not in names]
        if missing:
            raise NotTripData(f"{path}: not a TLC {kind} trip file: missing column(s) {', '.join(missing)}")
        extra = [c for c in EXTRA_COLUMNS if c in names]
        frame = pq.read_table(path, columns=[pick, drop, *TRIP_COLUMNS, *extra]).to_pandas()
        frame = frame.rename(columns={pick: "pickup_datetime", drop: "dropoff_datetime"})
        frames.append(frame)
        files.append({"path": str(path), "schema": kind, "rows": len(frame), "sha256": sha256_file(path)})
    return Trips(pd.concat(frames, ignore_index=True), files)


def fingerprint(files: list[dict]) -> str:
    """One hash naming exactly which bytes a model was trained on."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["sha256"]):
        digest.update(f["sha256"].encode())
    return "sha256:" + digest.hexdigest()


def make_features(trips: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Return (X, y): model inputs and duration in minutes, for 1-60 minute trips.

    Rows come out in pickup order, so the last rows are the latest trips.
    """
    trips = trips.sort_values("pickup_datetime", kind="stable")
    minutes = (trips["dropoff_datetime"] - trips["pickup_datetime"]).dt.total_seconds() / 60.0
    keep = minutes.between(MIN_MINUTES, MAX_MINUTES) & trips[TRIP_COLUMNS].notna().all(axis=1)
    trips, minutes = trips[keep], minutes[keep]
    pickup = trips["pickup_datetime"]
    X = pd.DataFrame(
        {
            "PULocationID": trips["PULocationID"].astype("int64"),
            "DOLocationID": trips["DOLocationID"].astype("int64"),
            "trip_distance": trips["trip_distance"].astype("float32"),
            "pickup_hour": pickup.dt.hour.astype("int64"),
            "pickup_weekday": pickup.dt.day_of_week.astype("int64"),
        }
    ).reset_index(drop=True)
    y = minutes.astype("float64").rename(TARGET).reset_index(drop=True)
    return X, y


def split_latest(X: pd.DataFrame, y: pd.Series, validation: float = 0.2):
    """Hold out the latest `validation` share of trips, as a deployed model would meet them."""
    cut = int(round(len(X) * (1.0 - validation)))
    return X.iloc[:cut], y.iloc[:cut], X.iloc[cut:].reset_index(drop=True), y.iloc[cut:].reset_index(drop=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
