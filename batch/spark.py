"""The Spark engine: the same scoring on Apache Spark, for more than one machine.

Spark reads the parquet files (or directories of them), each executor's
Python worker loads the ONNX graph once (shipped as a broadcast, cached per
process) and applies Scorer.score to the Arrow batches of mapInArrow; the
output is a parquet directory (a table's path) or, for an OUT named
*.parquet, one file, with the local engine's schema and numbers.
`local[*]` here; a cluster master URL elsewhere (the project's code is
shipped to the executors as a zip).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from train.data import CLOCKS, EXTRA_COLUMNS, TRIP_COLUMNS, NotTripData, tlc_kind

from . import output
from .model import Published
from .score import TRIPS, Scorer

ROOT = Path(__file__).resolve().parents[1]
SPARK_TYPES = {pa.string(): "string", pa.int64(): "bigint", pa.float32(): "float", pa.float64(): "double",
               pa.timestamp("us"): "timestamp_ntz"}


@contextlib.contextmanager
def session(master: str = "local[*]", ui: bool = False) -> Iterator[SparkSession]:
    """A Spark session for scoring; stopped on exit.

    The session time zone is UTC so that no timestamp is shifted on its way
    to Python; the features read the clock as stored anyway.
    """
    # The workers run this interpreter (its venv has onnxruntime) unless
    # PYSPARK_PYTHON names the executors' one (PySpark reads only the variable).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master(master).appName("skl2go-batch")
             .config("spark.ui.enabled", str(ui).lower())
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536")
             .getOrCreate())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            spark.sparkContext.addPyFile(str(_code_zip(Path(tmp))))
            yield spark
    finally:
        spark.stop()


def _code_zip(tmp: Path) -> Path:
    """The packages the executors import (batch, train), zipped for addPyFile."""
    path = tmp / "skl2go.zip"
    with zipfile.ZipFile(path, "w") as z:
        for package in ("batch", "train"):
            for source in (ROOT / package).glob("*.py"):
                z.write(source, f"{package}/{source.name}")
    return path


def trips(spark: SparkSession, paths: list[str | Path]) -> DataFrame:
    """The trips of every path as TRIPS, ride ids `<file name>:<row in file>`
    like the local engine's. Each path is checked to be TLC-shaped."""
    if not paths:
        raise NotTripData("no trip files given")
    frames = []
    for path in map(str, paths):
        if not Path(path).exists() and "://" not in path:
            raise NotTripData(f"{path}: no such file")
        try:
            raw = spark.read.parquet(path)
        except Exception as exc:  # Spark's AnalysisException and friends
            raise NotTripData(f"{path}: not parquet trips ({str(exc).splitlines()[0]})") from exc
        kind = tlc_kind(path, raw.columns)
        pick, drop = CLOCKS[kind]
        columns = [
            F.concat_ws(":", F.col("_metadata.file_name"), F.col("_metadata.row_index").cast("string"))
            .alias("ride_id"),
            F.col(pick).cast("timestamp_ntz").alias("pickup_datetime"),
            F.col(drop).cast("timestamp_ntz").alias("dropoff_datetime"),
        ]
        for name in TRIPS.names[3:]:
            source = F.col(name) if name in raw.columns else F.lit(None)
            columns.append(source.cast(SPARK_TYPES[TRIPS.field(name).type]).alias(name))
        frames.append(raw.select(*columns))
    return functools.reduce(DataFrame.unionByName, frames)


def score(spark: SparkSession, paths: list[str | Path], out: Path, published: Published,
          overwrite: bool = False, log=print) -> dict:
    """Score every trip of `paths` into `out`: a directory of parquet files
    (a table's path), or one parquet file when its name ends in .parquet."""
    frame = trips(spark, paths)
    output.refuse_existing(Path(out), overwrite)
    onnx_bytes = published.onnx_bytes()
    schema = Scorer(published, onnx_bytes).schema  # also checks the graph on the driver
    model = spark.sparkContext.broadcast((published, onnx_bytes))
    log(f"[score] {', '.join(map(str, paths))} with {published.name} version {published.version} "
        f"({published.metadata['family']}), Spark engine, master {spark.sparkContext.master}")

    def apply(batches):
        scorer = _scorer(*model.value)
        for batch in batches:
            yield scorer.score(batch)

    ddl = ", ".join(f"`{f.name}` {SPARK_TYPES[f.type]}" for f in schema)
    started = time.perf_counter()
    with output.replacing(Path(out), overwrite) as tmp:
        parts = tmp.with_name(tmp.name + ".parts") if output.single_file(out) else tmp
        try:
            frame.mapInArrow(apply, ddl).write.parquet(str(parts), compression="zstd")
            counts = spark.read.parquet(str(parts)).select(F.count("*"), F.count("reason")).first()
            if parts != tmp:
                _concatenate(parts, tmp, schema)
        finally:
            if parts != tmp:
                shutil.rmtree(parts, ignore_errors=True)
        seconds = time.perf_counter() - started
    rows, unscored = counts[0], counts[1]
    log(f"[done] {rows:,} trips scored into {out} in {seconds:.1f}s ({rows / max(seconds, 1e-9):,.0f} trips/s); "
        f"{unscored:,} could not be scored (see the reason column)")
    return {"rows": rows, "unscored": unscored, "seconds": seconds}


def _concatenate(parts: Path, into: Path, schema: pa.Schema) -> None:
    """Spark's part files as one parquet file, row group by row group (on
    the driver, memory bounded), in the order of the part files."""
    with pq.ParquetWriter(into, schema, compression="zstd") as writer:
        for part in sorted(parts.glob("part-*.parquet")):
            source = pq.ParquetFile(part)
            for group in range(source.num_row_groups):
                writer.write_table(source.read_row_group(group).cast(schema))


# The Scorers of this Python worker process, by graph. Spark reuses its
# workers, so each executor process loads a graph once, not once per task.
_SCORERS: dict[tuple[str, int, str], Scorer] = {}


def _scorer(published: Published, onnx_bytes: bytes) -> Scorer:
    key = (published.name, published.version, hashlib.sha256(onnx_bytes).hexdigest())
    if key not in _SCORERS:
        _SCORERS[key] = Scorer(published, onnx_bytes)
    return _SCORERS[key]
