"""The model's inputs: which fields of a TLC trip they come from and how.

The one definition of the features. Training (train/data.py) and batch
scoring (batch/) compute them with `inputs`; online clients send the same
fields and docs/features.md tells them how to compute them. Everything else
(one-hot encoding, scaling) is a step of the sklearn Pipeline, so it is
inside the ONNX graph.

The two clock features are read off the pickup timestamp as written in the
file: TLC clocks are New York wall-clock times without a zone, so no time
zone conversion happens anywhere.
"""

from __future__ import annotations

import numpy as np

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
# The values a numeric input may take, in training and in requests (the
# server refuses others). Beyond 1,000 miles a taxi trip is a meter error; the
# bound also keeps a linear model's float32 arithmetic far from overflow.
RANGES: dict[str, tuple[float, float]] = {"trip_distance": (0.0, 1000.0)}

# The trip fields the features are computed from (the pickup clock is
# lpep_pickup_datetime in green files, tpep_pickup_datetime in yellow ones).
PICKUP = "pickup_datetime"
SOURCES = [PICKUP, "PULocationID", "DOLocationID", "trip_distance"]

_MICROS_PER_HOUR = 3_600_000_000
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0


def clock(pickup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hour (0-23) and weekday (0 = Monday … 6 = Sunday) of wall-clock timestamps.

    Integer arithmetic on the timestamp as stored, the same answer as
    pandas' `dt.hour` and `dt.day_of_week` on a naive timestamp, and the same
    whatever time zone label an engine attaches to the column.
    """
    hours = np.floor_divide(pickup.astype("datetime64[us]").astype(np.int64), _MICROS_PER_HOUR)
    return hours % 24, (np.floor_divide(hours, 24) + _EPOCH_WEEKDAY) % 7


def inputs(pickup: np.ndarray, pickup_zone: np.ndarray, dropoff_zone: np.ndarray,
           distance: np.ndarray) -> dict[str, np.ndarray]:
    """The model's inputs (FEATURES, in order and typed) from a trip's fields.

    `pickup` is datetime64; zones are integers; distance in miles, cast to
    float32 here. Missing values must be handled by the caller (training
    drops those trips, batch scoring keeps them with a reason).
    """
    hour, weekday = clock(pickup)
    columns = {
        "PULocationID": np.asarray(pickup_zone),
        "DOLocationID": np.asarray(dropoff_zone),
        "trip_distance": np.asarray(distance),
        "pickup_hour": hour,
        "pickup_weekday": weekday,
    }
    return {name: columns[name].astype(dtype, copy=False) for name, dtype in FEATURES.items()}
