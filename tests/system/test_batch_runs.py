"""Batch scoring as it is run: `make score ALIAS=champion` against the real
MLflow registry, `make score-new` over a directory where monthly files land,
and the output shapes (one parquet file, or a directory of files) of both
engines.
"""

from __future__ import annotations

import os
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from batch import local, model
from topology import make
from train import synth, tracking

NAME = "batch_alias"  # registered by this module only: the registry lives for the session


def run(target: str, **variables: str):
    env = {k: v for k, v in os.environ.items() if k not in ("ALIAS", "MLFLOW_TRACKING_URI", "REGISTRY", "VERSION")}
    return make(target, {**env, **variables})


@pytest.fixture(scope="module")
def registered(register) -> tuple[int, int]:
    """batch_alias versions 1 (linear, champion) and 2 (ridge, not promoted)."""
    return register(NAME, "linear", True), register(NAME, "ridge", False)


def test_score_by_alias_follows_the_registry(registered, mlflow_registry, repository, tmp_path):
    url, _ = mlflow_registry
    assert registered == (1, 2)
    out = tmp_path / "champion.parquet"
    done = run("score", DATA=str(repository.trips), OUT=str(out), NAME=NAME, ALIAS="champion", REGISTRY=url)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    assert set(table.column("model_version").to_pylist()) == {1}
    assert table.column("model_name").to_pylist()[0] == NAME

    # The same graph, published locally, gives the same numbers.
    os.environ["MLFLOW_TRACKING_URI"] = url
    try:
        published = model.from_registry(NAME, "champion", tmp_path / "cache")
        tracking.set_alias(NAME, 2)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    assert published.version == 1 and published.metadata["family"] == "linear"
    local.score([repository.trips], tmp_path / "direct.parquet", published, log=lambda m: None)
    assert pq.read_table(tmp_path / "direct.parquet").equals(table)

    # The alias moved: the next run scores with version 2.
    out2 = tmp_path / "moved.parquet"
    done = run("score", DATA=str(repository.trips), OUT=str(out2), NAME=NAME, ALIAS="champion", REGISTRY=url)
    assert done.returncode == 0, done.stderr
    moved = pq.read_table(out2)
    assert set(moved.column("model_version").to_pylist()) == {2}
    assert not moved.column("prediction").equals(table.column("prediction"))  # ridge, not linear


def test_a_missing_alias_or_registry_is_a_clear_error(registered, mlflow_registry, repository, tmp_path):
    url, _ = mlflow_registry
    out = tmp_path / "out.parquet"
    done = run("score", DATA=str(repository.trips), OUT=str(out), NAME=NAME, ALIAS="nobody", REGISTRY=url)
    assert done.returncode != 0
    assert f"{NAME}@nobody" in done.stderr and "alias" in done.stderr.lower(), done.stderr
    done = run("score", DATA=str(repository.trips), OUT=str(out), NAME="no_such_model", ALIAS="champion",
               REGISTRY=url)
    assert done.returncode != 0 and "no_such_model@champion" in done.stderr, done.stderr
    done = run("score", DATA=str(repository.trips), OUT=str(out), NAME=NAME, ALIAS="champion")
    assert done.returncode != 0 and "no registry configured: set MLFLOW_TRACKING_URI" in done.stderr, done.stderr
    assert not out.exists()


def test_score_new_scores_each_new_month_once(repository, tmp_path):
    incoming, scored = tmp_path / "incoming", tmp_path / "scored"
    incoming.mkdir()
    for month, rows in (("2024-01", 3000), ("2024-02", 2000)):
        synth.write(incoming / f"green_tripdata_{month}.parquet", rows=rows, seed=int(month[-1]))
    variables = dict(DIR=str(incoming), OUT_DIR=str(scored), NAME="trip_duration", MODELS=str(repository.models))

    first = run("score-new", **variables)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in scored.iterdir()) == ["green_tripdata_2024-01.scored.parquet",
                                                         "green_tripdata_2024-02.scored.parquet"]
    assert pq.read_metadata(scored / "green_tripdata_2024-01.scored.parquet").num_rows == 3000
    stamps = {p.name: p.stat().st_mtime_ns for p in scored.iterdir()}

    # Nothing new: nothing rescored. A new month, and a file that is not
    # trips: the month is scored, the other reported and left for next time.
    again = run("score-new", **variables)
    assert again.returncode == 0 and "0 scored, 2 already scored" in again.stderr, again.stderr
    synth.write(incoming / "green_tripdata_2024-03.parquet", rows=1000, seed=3)
    shutil.copy(incoming / "green_tripdata_2024-01.parquet", incoming / "broken.parquet")
    (incoming / "broken.parquet").write_bytes((incoming / "broken.parquet").read_bytes()[:500])  # a copy cut short
    third = run("score-new", **variables)
    assert third.returncode != 0, third.stderr
    assert "1 scored, 2 already scored, 1 failed" in third.stderr and "broken.parquet" in third.stderr, third.stderr
    assert {p.name: p.stat().st_mtime_ns for p in scored.iterdir() if p.name in stamps} == stamps
    assert sorted(p.name for p in scored.iterdir()) == ["green_tripdata_2024-01.scored.parquet",
                                                         "green_tripdata_2024-02.scored.parquet",
                                                         "green_tripdata_2024-03.scored.parquet"]


@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    from batch import spark as engine

    with engine.session("local[2]") as session:
        yield session


@pytest.mark.parametrize("out_name", ["scored.parquet", "scored"])
def test_both_engines_write_a_file_or_a_table_directory(repository, spark, tmp_path, out_name):
    from batch import spark as engine

    published = model.resolve(repository.models, "trip_duration")
    files = [repository.trips]
    ours, theirs = tmp_path / "local" / out_name, tmp_path / "spark" / out_name
    local.score(files, ours, published, log=lambda m: None)
    engine.score(spark, files, theirs, published, log=lambda m: None)
    for out in (ours, theirs):
        assert out.is_file() == out_name.endswith(".parquet"), out
        if out.is_dir():
            assert list(out.glob("*.parquet")), f"{out} holds no parquet file"
    a, b = (pq.read_table(p) for p in (ours, theirs))
    a, b = (t.take(pc.sort_indices(t, [("ride_id", "ascending")])) for t in (a, b))
    assert a.num_rows == b.num_rows == pq.read_metadata(repository.trips).num_rows
    for column in a.schema.names:
        assert a.column(column).equals(b.column(column)), column
    left = [p for d in (tmp_path / "local", tmp_path / "spark") for p in d.iterdir() if p.name.startswith(".")]
    assert not left, f"temporary files left behind: {left}"
