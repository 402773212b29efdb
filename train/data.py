"""Load NYC TLC trip files and turn them into features and a target.

Green files name their clock columns lpep_*, yellow files tpep_*; both have
the zone and distance columns. Two tasks use the same inputs, what is known
when a trip starts: regression predicts the trip duration in minutes, and
classification predicts whether a card payment includes a tip.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from . import features
# The features are defined once, in features.py; these names stay for the callers.
from .features import CATEGORICAL, FEATURES, NUMERIC, RANGES  # noqa: F401
from .tasks import CLASSIFICATION, DEFAULT_NAMES, REGRESSION  # noqa: F401  (data.CLASSIFICATION …)

if TYPE_CHECKING:  # pandas is imported where it is used: batch scoring never needs it
    import pandas as pd

# The columns every TLC-shaped file must have, besides its two clock columns.
TRIP_COLUMNS = ["PULocationID", "DOLocationID", "trip_distance"]
# Optional columns, required by the classification task ("was a tip given").
EXTRA_COLUMNS = ["payment_type", "tip_amount"]
CLOCKS = {
    "green": ("lpep_pickup_datetime", "lpep_dropoff_datetime"),
    "yellow": ("tpep_pickup_datetime", "tpep_dropoff_datetime"),
}

MIN_MINUTES, MAX_MINUTES = 1.0, 60.0

TARGET = "duration_minutes"  # regression: minutes from pickup to dropoff
TIP_TARGET = "tip_given"  # classification: 1 if a card payment included a tip, else 0
CARD = 1  # payment_type of card payments, the only ones whose tips are recorded
TARGETS = {REGRESSION: TARGET, CLASSIFICATION: TIP_TARGET}


class NotTripData(ValueError):
    """A file that is not a TLC trip file (missing columns, unreadable)."""


@dataclass
class Trips:
    """Trips from one or more files, with the clock columns renamed."""

    frame: pd.DataFrame  # pickup_datetime, dropoff_datetime, TRIP_COLUMNS, [EXTRA_COLUMNS]
    files: list[dict]  # path, schema, rows, sha256 of each file read


def load_trips(paths: list[str | Path], task: str = REGRESSION) -> Trips:
    """Read TLC parquet files (green or yellow, any mix) into one frame.

    The classification task also needs EXTRA_COLUMNS in every file.
    """
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
        kind = tlc_kind(path, names, extra=EXTRA_COLUMNS if task == CLASSIFICATION else ())
        pick, drop = CLOCKS[kind]
        extra = [c for c in EXTRA_COLUMNS if c in names]
        frame = pq.read_table(path, columns=[pick, drop, *TRIP_COLUMNS, *extra]).to_pandas()
        frame = frame.rename(columns={pick: "pickup_datetime", drop: "dropoff_datetime"})
        frames.append(frame)
        files.append({"path": str(path), "schema": kind, "rows": len(frame), "sha256": sha256_file(path)})
    import pandas as pd

    return Trips(pd.concat(frames, ignore_index=True), files)


def tlc_kind(path: str | Path, names: list[str], extra: list[str] | tuple = ()) -> str:
    """Return "green" or "yellow" for a file with these column names, or raise
    NotTripData naming the file and the missing column(s)."""
    kind = next((k for k, (pick, _) in CLOCKS.items() if pick in names), None)
    if kind is None:
        raise NotTripData(
            f"{path}: not a TLC trip file: missing column lpep_pickup_datetime "
            f"(green) or tpep_pickup_datetime (yellow)"
        )
    required = [CLOCKS[kind][1], *TRIP_COLUMNS, *extra]
    missing = [c for c in required if c not in names]
    if missing:
        raise NotTripData(f"{path}: not a TLC {kind} trip file: missing column(s) {', '.join(missing)}")
    return kind


def fingerprint(files: list[dict]) -> str:
    """One hash naming exactly which bytes a model was trained on."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["sha256"]):
        digest.update(f["sha256"].encode())
    return "sha256:" + digest.hexdigest()


def make_features(trips: pd.DataFrame, task: str = REGRESSION) -> tuple[pd.DataFrame, pd.Series]:
    """Return (X, y): model inputs and the task's target.

    Both tasks keep the same clean trips: 1-60 minutes, distance within
    RANGES, no missing field. Regression's target is the duration in
    minutes; classification keeps card payments only (cash tips are not
    recorded) and its target is 1 when a tip was given, else 0.
    Rows come out in pickup order, so the last rows are the latest trips.
    """
    if task not in TARGETS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TARGETS)}")
    trips = trips.sort_values("pickup_datetime", kind="stable")
    minutes = (trips["dropoff_datetime"] - trips["pickup_datetime"]).dt.total_seconds() / 60.0
    keep = minutes.between(MIN_MINUTES, MAX_MINUTES) & trips[TRIP_COLUMNS].notna().all(axis=1)
    for column, (low, high) in RANGES.items():
        keep &= trips[column].between(low, high)
    if task == CLASSIFICATION:
        keep &= (trips["payment_type"] == CARD) & trips["tip_amount"].notna()
    trips, minutes = trips[keep], minutes[keep]
    import pandas as pd

    X = pd.DataFrame(features.inputs(trips["pickup_datetime"].to_numpy(), trips["PULocationID"].to_numpy(),
                                     trips["DOLocationID"].to_numpy(), trips["trip_distance"].to_numpy()))
    if task == CLASSIFICATION:
        y = (trips["tip_amount"] > 0).astype("int64").rename(TIP_TARGET).reset_index(drop=True)
    else:
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
