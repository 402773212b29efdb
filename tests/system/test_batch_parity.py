"""Batch scoring against the running server: the local and Spark engines give
every trip the answer nginx + the Go replicas give it, bit for bit.

Spark starts once for this module (one JVM, `local[2]`, UI off).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch import local, model, output
from loadtest import samples
from topology.probe import request
from train import data, features, synth
from train.tasks import CLASSIFICATION

ROWS = 3000  # trips compared with the server, per model
ALONE = 200  # of which sent one per request (the server's one-row path)


@pytest.fixture(scope="module")
def yellow_file(tmp_path_factory) -> Path:
    return synth.write(tmp_path_factory.mktemp("yellow") / "yellow_tripdata_sample.parquet", rows=10_000, seed=8,
                       schema="yellow")


@pytest.fixture(scope="module")
def small_green_file(tmp_path_factory) -> Path:
    """Spark gets fewer trips than the local engine: its time goes in per-job overheads."""
    return synth.write(tmp_path_factory.mktemp("green") / "green_tripdata_small.parquet", rows=5_000, seed=9)


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    from batch import spark as engine

    with engine.session("local[2]") as session:
        yield session


def scored_locally(repository, name: str, files: list[Path], out: Path) -> pa.Table:
    local.score(files, out, model.resolve(repository.models, name), log=lambda m: None)
    return pq.read_table(out)


def server_answers(topology, name: str, rows: pa.Table) -> list:
    """The server's answer for each row (through nginx): ALONE rows one per
    request, 8 at a time so that its batching merges some, the rest 100 per request."""
    instances = samples.instances(rows.select(list(features.FEATURES)).to_pandas())
    url = f"{topology.url}/v1/models/{name}:predict"

    def ask(chunk: list[dict]) -> list:
        status, body = request("POST", url, json.dumps({"instances": chunk}).encode())
        assert status == 200, body
        return body["predictions"]

    chunks = [instances[i:i + 1] for i in range(ALONE)]
    chunks += [instances[i:i + 100] for i in range(ALONE, len(instances), 100)]
    with ThreadPoolExecutor(8) as pool:
        return [p for answers in pool.map(ask, chunks) for p in answers]


def assert_same_bits(table: pa.Table, answers: list, task: str) -> None:
    if task == CLASSIFICATION:
        labels = np.array([a["label"] for a in answers], dtype=np.int64)
        proba = np.array([a["probabilities"] for a in answers], dtype=np.float32)
        assert (table.column("label").to_numpy() == labels).all()
        for k in range(proba.shape[1]):
            got = table.column(f"probability_{k}").to_numpy()
            differ = np.flatnonzero(got.view(np.uint32) != proba[:, k].view(np.uint32))
            assert len(differ) == 0, f"class {k}: {len(differ)} rows differ, first {got[differ[:3]]} vs {proba[differ[:3], k]}"
    else:
        want = np.array(answers, dtype=np.float32)  # the server writes float32's shortest text
        got = table.column("prediction").to_numpy()
        differ = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
        assert len(differ) == 0, f"{len(differ)} of {len(want)} rows differ, first: {got[differ[:3]]} vs {want[differ[:3]]}"


def sample(table: pa.Table) -> pa.Table:
    """ROWS scored trips spread over the file (rows without a reason)."""
    scored = table.filter(table.column("reason").is_null())
    return scored.take(np.linspace(0, scored.num_rows - 1, ROWS).astype(int))


@pytest.mark.parametrize("name", ["trip_duration", "trip_duration_hgb", "tip_given"])
def test_the_local_engine_answers_like_the_server(repository, topology, yellow_file, tmp_path, name):
    table = scored_locally(repository, name, [repository.trips, yellow_file], tmp_path / "scored.parquet")
    rows = sample(table)
    assert_same_bits(rows, server_answers(topology, name, rows), model.resolve(repository.models, name).task)


@pytest.mark.parametrize("name", ["trip_duration", "tip_given"])
def test_the_spark_engine_writes_what_the_local_engine_writes(repository, topology, spark, small_green_file,
                                                               yellow_file, tmp_path, name):
    from batch import spark as engine

    published = model.resolve(repository.models, name)
    files = [small_green_file, yellow_file]
    engine.score(spark, files, tmp_path / "spark", published, log=lambda m: None)
    theirs = pq.read_table(tmp_path / "spark")
    ours = scored_locally(repository, name, files, tmp_path / "local.parquet")
    assert [(f.name, f.type) for f in theirs.schema] == [(f.name, f.type) for f in ours.schema]
    theirs = theirs.take(pa.compute.sort_indices(theirs, [("ride_id", "ascending")]))
    ours = ours.take(pa.compute.sort_indices(ours, [("ride_id", "ascending")]))
    assert theirs.num_rows == ours.num_rows == sum(pq.read_metadata(f).num_rows for f in files)
    for column in ours.schema.names:  # every value, every bit (NaN-free: nulls mark what is missing)
        assert theirs.column(column).equals(ours.column(column)), column
    rows = sample(theirs)
    assert_same_bits(rows, server_answers(topology, name, rows), published.task)


def test_spark_refuses_what_the_local_engine_refuses(repository, spark, tmp_path):
    from batch import spark as engine

    published = model.resolve(repository.models, "trip_duration")
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"lpep_pickup_datetime": [1], "PULocationID": [2]}), other)
    with pytest.raises(data.NotTripData, match=f"{other}: not a TLC green trip file: missing column"
                                               r"\(s\) lpep_dropoff_datetime, DOLocationID, trip_distance"):
        engine.score(spark, [other], tmp_path / "out", published)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("me")
    with pytest.raises(output.OutputExists):
        engine.score(spark, [repository.trips], tmp_path / "out", published)
    assert (tmp_path / "out" / "keep").read_text() == "me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.parquet", "out"]
