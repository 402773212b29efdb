"""The sample generator: deterministic, TLC-shaped, and learnable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from train import synth

from conftest import SEED


def test_same_seed_gives_the_same_bytes(tmp_path):
    a = synth.write(tmp_path / "a.parquet", rows=5_000, seed=11)
    b = synth.write(tmp_path / "b.parquet", rows=5_000, seed=11)
    c = synth.write(tmp_path / "c.parquet", rows=5_000, seed=12)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_schema_is_the_real_green_schema(trips_file):
    schema = pq.read_schema(trips_file)
    assert schema.names == synth.GREEN_SCHEMA.names
    assert [f.type for f in schema] == [f.type for f in synth.GREEN_SCHEMA]
    for column in ["lpep_pickup_datetime", "lpep_dropoff_datetime", "PULocationID", "DOLocationID",
                   "passenger_count", "trip_distance", "fare_amount", "tip_amount", "payment_type"]:
        assert column in schema.names
    assert pq.read_metadata(trips_file).num_rows == 40_000


def test_default_size_is_realistic():
    assert synth.DEFAULT_ROWS >= 200_000


def test_trips_stay_in_the_month_and_zone_range(trips_file):
    trips = pd.read_parquet(trips_file)
    assert trips["lpep_pickup_datetime"].min() >= pd.Timestamp("2021-01-01")
    assert trips["lpep_pickup_datetime"].max() < pd.Timestamp("2021-02-01")
    for column in ["PULocationID", "DOLocationID"]:
        assert trips[column].between(1, synth.N_ZONES).all()
    assert trips["PULocationID"].nunique() > 150


def test_distance_follows_geography(trips_file):
    trips = pd.read_parquet(trips_file)
    trips = trips[(trips["trip_distance"] > 0) & (trips["PULocationID"] != trips["DOLocationID"])]
    pos = synth.zone_positions(SEED)
    straight = np.linalg.norm(pos[trips["PULocationID"]] - pos[trips["DOLocationID"]], axis=1)
    assert np.corrcoef(straight, trips["trip_distance"])[0, 1] > 0.9
    assert (trips["trip_distance"] >= straight).all()  # roads are never shorter than a straight line


def test_speed_varies_by_hour_and_weekday(trips_file):
    trips = pd.read_parquet(trips_file)
    minutes = (trips["lpep_dropoff_datetime"] - trips["lpep_pickup_datetime"]).dt.total_seconds() / 60
    ok = (trips["trip_distance"] > 1) & minutes.between(1, 60)
    trips, minutes = trips[ok], minutes[ok]
    mph = trips["trip_distance"] / (minutes / 60)
    hour = trips["lpep_pickup_datetime"].dt.hour
    weekend = trips["lpep_pickup_datetime"].dt.day_of_week >= 5
    night, rush = mph[hour.between(1, 4) & ~weekend].median(), mph[hour.between(16, 18) & ~weekend].median()
    assert night > 1.4 * rush
    assert mph[weekend & hour.between(10, 16)].median() > 1.1 * mph[~weekend & hour.between(10, 16)].median()


def test_outliers_like_real_files(trips_file):
    trips = pd.read_parquet(trips_file)
    minutes = (trips["lpep_dropoff_datetime"] - trips["lpep_pickup_datetime"]).dt.total_seconds() / 60
    assert (trips["trip_distance"] == 0).mean() > 0.005
    assert (minutes < 0).mean() > 0.002
    assert (minutes > 60).mean() > 0.005
    assert minutes.between(1, 60).mean() > 0.85  # but most trips are ordinary


def test_tips_only_on_card_payments(trips_file):
    trips = pd.read_parquet(trips_file)
    assert (trips.loc[trips["payment_type"] != 1, "tip_amount"] == 0).all()
    assert 0.3 < (trips.loc[trips["payment_type"] == 1, "tip_amount"] > 0).mean() < 0.95


def test_tipping_depends_on_the_trip(trips_file):
    card = pd.read_parquet(trips_file).query("payment_type == 1")
    tipped = card["tip_amount"] > 0
    hour = card["lpep_pickup_datetime"].dt.hour
    weekend = card["lpep_pickup_datetime"].dt.day_of_week >= 5
    central = np.linalg.norm(synth.zone_positions(SEED)[card["PULocationID"]], axis=1) < 3
    assert tipped[card["trip_distance"] > 5].mean() > tipped[card["trip_distance"] < 1].mean() + 0.1
    assert tipped[hour.between(0, 3)].mean() > tipped[hour.between(11, 14)].mean() + 0.1
    assert tipped[~weekend].mean() > tipped[weekend].mean() + 0.05
    assert tipped[central].mean() > tipped[~central].mean() + 0.1


def test_the_tip_model_changes_no_other_column(monkeypatch):
    """Tips compare the same uniform draw with a per-row probability: every
    other column has the bytes it had when tipping was a constant 75%."""
    varied = synth.generate(5_000, seed=3)
    monkeypatch.setattr(synth, "tip_probability", lambda *args: 0.75)
    constant = synth.generate(5_000, seed=3)
    for name in synth.GREEN_SCHEMA.names:
        if name not in ("tip_amount", "total_amount"):
            assert varied[name].equals(constant[name]), name
    assert not varied["tip_amount"].equals(constant["tip_amount"])
