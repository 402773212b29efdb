"""The local engine: TLC parquet files scored batch by batch on this machine.

Each file is read one row group at a time (at most BATCH_ROWS rows per
batch, only the columns scoring needs), scored, and appended to one output
parquet file (OUT, or OUT/part-00000.parquet when OUT is a directory), so
memory stays bounded whatever the size of the files.

Reading, scoring and writing overlap: while one batch is scored, the next
is read and the previous one written, each on a thread of its own (Arrow's
parquet reader and writer and ONNX Runtime release the GIL), so at most
three batches are in memory at once. The output's rows stay in input order.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from train import features
from train.data import CLOCKS, EXTRA_COLUMNS, TRIP_COLUMNS, NotTripData, tlc_kind
from train.tasks import CLASSIFICATION

from . import output
from .model import Published
from .score import TRIPS, Scorer
from .stages import Stages, process_cpu

BATCH_ROWS = 65_536
PROGRESS_SECONDS = 2.0


@dataclass(frozen=True)
class TripFile:
    """An input file checked to be TLC-shaped."""

    path: Path
    kind: str  # green or yellow
    rows: int
    columns: list[str]  # the columns read, in TRIPS order (clocks under their own names)


def trip_files(paths: list[str | Path]) -> list[TripFile]:
    """Every parquet file named (a directory stands for the *.parquet files in it),
    each checked to be TLC-shaped; NotTripData names the first one that is not."""
    if not paths:
        raise NotTripData("no trip files given")
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
            if not found:
                raise NotTripData(f"{path}: a directory without parquet files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise NotTripData(f"{path}: no such file")
    checked = []
    for path in files:
        try:
            meta = pq.read_metadata(path)
        except Exception as exc:  # pyarrow raises several types for non-parquet input
            raise NotTripData(f"{path}: not a parquet file ({exc})") from exc
        names = meta.schema.to_arrow_schema().names
        kind = tlc_kind(path, names)
        extra = [c for c in EXTRA_COLUMNS if c in names]
        checked.append(TripFile(path, kind, meta.num_rows, [*CLOCKS[kind], *TRIP_COLUMNS, *extra]))
    return checked


def trips_batch(batch: pa.RecordBatch, source: TripFile, first_row: int) -> pa.RecordBatch:
    """A batch of `source` as TRIPS: ride id `<file name>:<row in file>`, clocks renamed."""
    pick, drop = CLOCKS[source.kind]
    rows = batch.num_rows
    index = pc.cast(pa.array(np.arange(first_row, first_row + rows, dtype=np.int64)), pa.string())
    ride_id = pc.binary_join_element_wise(pa.scalar(source.path.name), index, ":")
    columns = {"ride_id": ride_id, "pickup_datetime": batch.column(pick), "dropoff_datetime": batch.column(drop)}
    for name in TRIPS.names[3:]:
        columns[name] = batch.column(name) if name in batch.schema.names else pa.nulls(rows)
    return pa.RecordBatch.from_arrays(
        [_cast(columns[f.name], f.type) for f in TRIPS], schema=TRIPS)


def score(paths: list[str | Path], out: Path, published: Published, overwrite: bool = False,
          batch_rows: int = BATCH_ROWS, log=print) -> dict:
    """Score every trip of `paths` with `published` into `out`: one parquet
    file (a .parquet name), else a directory holding one."""
    # What the process spent before this call: interpreter start, imports, finding the model.
    before = {"cpu": round(process_cpu(), 3)}
    stages, started, cpu_started = Stages(), time.perf_counter(), process_cpu()
    # Each batch's buffers are new: the default pool (mimalloc) hands freed
    # pages back to the system and faults them in again, batch after batch,
    # where the system allocator keeps them (BENCHMARKS.md).
    pa.set_memory_pool(pa.system_memory_pool())
    files = trip_files(paths)
    output.refuse_existing(Path(out), overwrite)
    with stages("session"):
        scorer = Scorer(published, threads=os.cpu_count() or 1)
    total = sum(f.rows for f in files)
    log(f"[score] {total:,} trips in {len(files)} file(s) with {published.name} version {published.version} "
        f"({published.metadata['family']}), local engine")
    last = time.perf_counter()
    done = unscored = 0
    with output.replacing(Path(out), overwrite) as tmp:
        if not output.single_file(out):
            tmp.mkdir()
            tmp = tmp / output.PART
        with writer_for(tmp, scorer.schema) as writer, \
                ThreadPoolExecutor(1, thread_name_prefix="write") as writing:
            written: Future | None = None
            for n, source in enumerate(files, 1):
                first_row = 0
                reader = pq.ParquetFile(source.path)
                # Decoded on the reading thread (not Arrow's pool), so the
                # read stage's CPU time is counted; it overlaps scoring anyway.
                batches = reader.iter_batches(batch_size=batch_rows, columns=needed(source, published),
                                              use_threads=False)
                for batch in read_ahead(batches, stages):
                    with stages("ride ids"):
                        trips = trips_batch(batch, source, first_row)
                    scored = scorer.score(trips, stages)
                    if written is not None:
                        with stages("waiting for the writer"):
                            written.result()  # in order, and a write error stops the run here
                    written = writing.submit(timed, stages, "write", writer.write_batch, scored)
                    first_row += batch.num_rows
                    done += batch.num_rows
                    unscored += scored.num_rows - scored.column("reason").null_count
                    now = time.perf_counter()
                    if now - last >= PROGRESS_SECONDS:
                        last = now
                        log(f"[score] file {n}/{len(files)} {source.path.name}: {done:,}/{total:,} trips "
                            f"({done / max(total, 1):.0%}), {done / (now - started):,.0f} trips/s")
            if written is not None:
                with stages("waiting for the writer"):
                    written.result()
            with stages("write"):
                writer.close()  # the footer (closing it again as the block ends does nothing)
        seconds = time.perf_counter() - started
    run = {"wall": round(seconds, 3), "cpu": round(process_cpu() - cpu_started, 3)}
    report = {"before the run": before, **stages.report()}
    # Arrow's and ONNX Runtime's own threads, Python between the stages.
    report["not in a stage"] = {"cpu": round(run["cpu"] - sum(t["cpu"] for t in report.values()) + before["cpu"], 3)}
    report["run"] = run
    log(f"[stages] {json.dumps(report)}")
    log(f"[done] {done:,} trips scored into {out} in {seconds:.1f}s ({done / max(seconds, 1e-9):,.0f} trips/s); "
        f"{unscored:,} could not be scored (see the reason column)")
    return {"rows": done, "unscored": unscored, "seconds": seconds, "stages": report}


def needed(source: TripFile, published: Published) -> list[str]:
    """The columns of `source` scoring reads: payment type and tip only
    for a classifier (the actual tip given); a regressor's are left null."""
    if published.task == CLASSIFICATION:
        return source.columns
    return [c for c in source.columns if c not in EXTRA_COLUMNS]


def writer_for(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """The output's writer. Snappy, not zstd: writing is the local engine's
    largest stage, and snappy costs less CPU for a file a little larger
    (BENCHMARKS.md). The ride ids share their file name as a prefix:
    DELTA_BYTE_ARRAY stores of each only what differs from the one before.
    Min/max statistics of a unique string column help no reader."""
    return pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=dictionary_columns(schema),
                            column_encoding={"ride_id": "DELTA_BYTE_ARRAY"},
                            write_statistics=[name for name in schema.names if name != "ride_id"])


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The output columns worth dictionary-encoding: the model's inputs and
    the integer and string columns have few distinct values. The ride id is
    unique and computed floats (predictions, durations) nearly so: the
    writer would build a dictionary for each page and then drop it, a
    large part of the writing time (and the file is smaller without)."""
    return [f.name for f in schema
            if f.name in features.FEATURES or (f.name != "ride_id" and not pa.types.is_floating(f.type))]


def read_ahead(batches: Iterable[pa.RecordBatch], stages: Stages | None = None) -> Iterator[pa.RecordBatch]:
    """The batches of `batches`, the next one read on a thread while the
    caller works on this one."""
    batches, stages = iter(batches), stages or Stages()
    with ThreadPoolExecutor(1, thread_name_prefix="read") as reading:
        following = reading.submit(timed, stages, "read", next, batches, None)
        while True:
            with stages("waiting for the reader"):
                batch = following.result()
            if batch is None:
                return
            following = reading.submit(timed, stages, "read", next, batches, None)
            yield batch


def timed(stages: Stages, name: str, work, *args):
    """work(*args), timed as `name` on the thread that runs it."""
    with stages(name):
        return work(*args)


def _cast(values: pa.Array, to: pa.DataType) -> pa.Array:
    # Timestamps of any unit or zone label keep their stored value (in µs).
    return values.cast(to, safe=not pa.types.is_timestamp(to))


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
