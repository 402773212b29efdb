"""Score one Arrow batch of trips: the step both engines apply to every batch.

The engines (local.py, spark.py) read TLC files and hand over batches with
the columns of TRIPS (clocks renamed, ride ids attached); `Scorer.score`
returns the output batch: the ride id, the model's inputs, the prediction(s),
the model's name and version, the actual outcome where the file has it, and
a reason for each trip the model could not score.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from train import features
from train.data import CARD
from train.tasks import CLASSIFICATION

from . import model as onnx_model
from .model import Published
from .stages import Stages

# What an engine hands to Scorer.score: a ride id and the trip fields, the
# clocks renamed from lpep_/tpep_. payment_type and tip_amount are null where
# a file lacks them.
TRIPS = pa.schema([
    ("ride_id", pa.string()),
    ("pickup_datetime", pa.timestamp("us")),
    ("dropoff_datetime", pa.timestamp("us")),
    ("PULocationID", pa.int64()),
    ("DOLocationID", pa.int64()),
    ("trip_distance", pa.float64()),
    ("payment_type", pa.float64()),
    ("tip_amount", pa.float64()),
])
ARROW_TYPES = {"int64": pa.int64(), "float32": pa.float32(), "float64": pa.float64()}
_MICROS_PER_MINUTE = 60_000_000


def output_schema(published: Published) -> pa.Schema:
    """The scored file's columns for this model (both engines write exactly these)."""
    fields = [("ride_id", pa.string())]
    fields += [(name, ARROW_TYPES[dtype]) for name, dtype in features.FEATURES.items()]
    if published.task == CLASSIFICATION:
        fields += [("label", pa.int64())]
        fields += [(f"probability_{c}", pa.float32()) for c in published.metadata["classes"]]
    else:
        fields += [("prediction", pa.float32())]
    fields += [("model_name", pa.string()), ("model_version", pa.int64())]
    if published.task == CLASSIFICATION:
        fields += [("actual_tip_given", pa.int64())]
    else:
        fields += [("actual_duration", pa.float64()), ("difference", pa.float64())]
    fields += [("reason", pa.string())]
    return pa.schema(fields)


class Scorer:
    """A published version's graph in an ONNX Runtime session, applied to trip batches."""

    def __init__(self, published: Published, onnx_bytes: bytes | None = None, threads: int = 1):
        self.published = published
        self.threads = threads  # ONNX Runtime runs at once (Spark: 1, its tasks run in parallel)
        self.schema = output_schema(published)
        self.session = onnx_model.session(onnx_bytes if onnx_bytes is not None else published.onnx_bytes())
        self.graph_inputs = [i.name for i in self.session.get_inputs()]
        if self.graph_inputs != list(features.FEATURES):
            raise ValueError(f"{published.path}: the graph's inputs {self.graph_inputs} are not the features "
                             f"{list(features.FEATURES)}")
        # The ranges model.json declares: the ones the server enforces.
        self.ranges = {i["name"]: tuple(i["range"]) for i in published.inputs if "range" in i}

    def score(self, trips: pa.RecordBatch, stages: Stages | None = None) -> pa.RecordBatch:
        """The output batch (self.schema) for a batch of TRIPS, row for row;
        its stages (features, onnx, output) timed into `stages`."""
        stages = stages or Stages()
        with stages("features"):
            X, missing, unscorable, reasons, pickup = self._features(trips)
        with stages("onnx", cpu=False):
            outputs = None
            if not unscorable.all():
                outputs = onnx_model.predict(self.session, {k: v[~unscorable].reshape(-1, 1) for k, v in X.items()},
                                              self.threads, stages)
        with stages("output"):
            return self._output(trips, pickup, X, missing, unscorable, reasons, outputs)

    def _features(self, trips: pa.RecordBatch) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                          np.ndarray, pa.Array, pa.Array]:
        """The model's inputs, where each field is missing, which trips
        cannot be scored and why, and the pickup clock in microseconds."""
        rows = trips.num_rows
        pickup = _micros(trips.column("pickup_datetime"))
        fields = {
            "pickup_datetime": pickup,
            "PULocationID": trips.column("PULocationID"),
            "DOLocationID": trips.column("DOLocationID"),
            "trip_distance": trips.column("trip_distance"),
        }
        missing = {name: _missing(values) for name, values in fields.items()}
        X = features.inputs(
            pickup.fill_null(0).to_numpy().view("datetime64[us]"),
            fields["PULocationID"].fill_null(0).to_numpy(),
            fields["DOLocationID"].fill_null(0).to_numpy(),
            fields["trip_distance"].fill_null(0.0).to_numpy(zero_copy_only=False),
        )
        unscorable, reasons = self._reasons(X, missing, rows)
        return X, missing, unscorable, reasons, pickup

    def _output(self, trips: pa.RecordBatch, pickup: pa.Array, X: dict[str, np.ndarray],
                missing: dict[str, np.ndarray], unscorable: np.ndarray, reasons: pa.Array,
                outputs: list[np.ndarray] | None) -> pa.RecordBatch:
        """The output batch: the inputs, the answers, the actual outcome, the reasons."""
        rows = trips.num_rows
        scored = ~unscorable
        dropoff = _micros(trips.column("dropoff_datetime"))
        columns: dict[str, pa.Array] = {"ride_id": trips.column("ride_id")}
        for name in features.FEATURES:
            # The inputs as the model saw them; null where a field was missing.
            gone = missing["pickup_datetime"] if name in ("pickup_hour", "pickup_weekday") else missing[name]
            columns[name] = pa.array(X[name], mask=gone, type=self.schema.field(name).type)

        predictions: dict[str, np.ndarray] = {}
        if self.published.task == CLASSIFICATION:
            labels = np.zeros(rows, dtype=np.int64)
            proba = np.zeros((rows, len(self.published.metadata["classes"])), dtype=np.float32)
            if scored.any():
                labels[scored], proba[scored] = outputs[0].reshape(-1), outputs[1]
            columns["label"] = pa.array(labels, mask=unscorable)
            for k, c in enumerate(self.published.metadata["classes"]):
                columns[f"probability_{c}"] = pa.array(proba[:, k], mask=unscorable)
        else:
            prediction = np.zeros(rows, dtype=np.float32)
            if scored.any():
                prediction[scored] = outputs[0].reshape(-1)
            columns["prediction"] = pa.array(prediction, mask=unscorable)
            predictions["prediction"] = prediction

        columns["model_name"] = pa.repeat(pa.scalar(self.published.name, pa.string()), rows)
        columns["model_version"] = pa.repeat(pa.scalar(self.published.version, pa.int64()), rows)
        if self.published.task == CLASSIFICATION:
            payment, tip = trips.column("payment_type"), trips.column("tip_amount")
            known = pc.and_(pc.equal(payment, float(CARD)), pc.is_valid(tip)).fill_null(False)
            tipped = pc.cast(pc.greater(tip, 0.0), pa.int64())
            columns["actual_tip_given"] = pc.if_else(known, tipped, pa.scalar(None, pa.int64()))
        else:
            actual = pc.divide(pc.cast(pc.subtract(dropoff, pickup), pa.float64()), float(_MICROS_PER_MINUTE))
            columns["actual_duration"] = actual
            columns["difference"] = pc.subtract(pa.array(predictions["prediction"].astype(np.float64),
                                                         mask=unscorable), actual)
        columns["reason"] = reasons
        return pa.RecordBatch.from_arrays([columns[f.name] for f in self.schema], schema=self.schema)

    def _reasons(self, X: dict[str, np.ndarray], missing: dict[str, np.ndarray],
                 rows: int) -> tuple[np.ndarray, pa.Array]:
        """Which trips cannot be scored, and why (null where they can)."""
        problems = [(gone, lambda row, name=name: f"missing {name}") for name, gone in missing.items()]
        for name, (low, high) in self.ranges.items():
            # Checked on the value the model gets (float32), as the server
            # checks it; a missing value is reported as missing, not here.
            outside = ~missing[name] & ~((X[name] >= low) & (X[name] <= high))
            problems.append((outside, lambda row, name=name, low=low, high=high:
                             f"{name} {X[name][row]:g} outside the model's range [{low:g}, {high:g}]"))
        unscorable = np.zeros(rows, dtype=bool)
        for mask, _ in problems:
            unscorable |= mask
        if not unscorable.any():
            return unscorable, pa.nulls(rows, pa.string())
        texts: list[str | None] = [None] * rows
        for row in np.flatnonzero(unscorable):  # rare: the text is built row by row
            texts[row] = "; ".join(describe(row) for mask, describe in problems if mask[row])
        return unscorable, pa.array(texts, pa.string())


def _micros(values: pa.Array) -> pa.Array:
    """Timestamps (any unit, any zone label) as int64 microseconds as stored."""
    if pa.types.is_timestamp(values.type):
        values = values.cast(pa.timestamp("us", values.type.tz), safe=False)
    return values.cast(pa.int64())


def _missing(values: pa.Array) -> np.ndarray:
    """True where a value is null, or NaN for a float column."""
    gone = values.is_null()
    if pa.types.is_floating(values.type):
        gone = pc.or_(gone, pc.is_nan(values).fill_null(True))
    return gone.to_numpy(zero_copy_only=False)
