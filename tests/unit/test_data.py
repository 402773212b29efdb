"""Loading TLC files (green and yellow) and the feature/target rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from train import data


def as_yellow(green: Path, out: Path) -> Path:
    table = pq.read_table(green)
    names = [n.replace("lpep_", "tpep_") for n in table.column_names]
    pq.write_table(table.rename_columns(names), out)
    return out


def test_loads_green(trips_file):
    trips = data.load_trips([trips_file])
    assert trips.files[0]["schema"] == "green"
    assert trips.files[0]["rows"] == len(trips.frame) == 40_000
    assert len(trips.files[0]["sha256"]) == 64
    assert {"pickup_datetime", "dropoff_datetime", *data.TRIP_COLUMNS} <= set(trips.frame.columns)


def test_loads_yellow_and_mixed_files(trips_file, tmp_path):
    yellow = as_yellow(trips_file, tmp_path / "yellow_tripdata.parquet")
    trips = data.load_trips([trips_file, yellow])
    assert [f["schema"] for f in trips.files] == ["green", "yellow"]
    assert len(trips.frame) == 80_000
    green_only = data.load_trips([trips_file]).frame
    pd.testing.assert_frame_equal(trips.frame.iloc[40_000:].reset_index(drop=True), green_only)


def test_fingerprint_names_the_bytes(trips_file, tmp_path):
    yellow = as_yellow(trips_file, tmp_path / "yellow.parquet")
    one = data.fingerprint(data.load_trips([trips_file]).files)
    both = data.fingerprint(data.load_trips([trips_file, yellow]).files)
    assert one.startswith("sha256:") and one != both
    assert both == data.fingerprint(data.load_trips([yellow, trips_file]).files)  # order does not matter


@pytest.mark.parametrize(
    "drop, expected",
    [
        (["DOLocationID"], "missing column(s) DOLocationID"),
        (["trip_distance", "PULocationID"], "missing column(s) PULocationID, trip_distance"),
        (["lpep_dropoff_datetime"], "missing column(s) lpep_dropoff_datetime"),
        (["lpep_pickup_datetime"], "missing column lpep_pickup_datetime (green) or tpep_pickup_datetime (yellow)"),
    ],
)
def test_refuses_files_that_are_not_tlc_shaped(trips_file, tmp_path, drop, expected):
    bad = tmp_path / "not_tlc.parquet"
    pq.write_table(pq.read_table(trips_file).drop_columns(drop), bad)
    with pytest.raises(data.NotTripData) as err:
        data.load_trips([trips_file, bad])
    assert str(bad) in str(err.value)
    assert expected in str(err.value)


def test_refuses_missing_and_non_parquet_files(tmp_path):
    text = tmp_path / "trips.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(data.NotTripData, match="not a parquet file"):
        data.load_trips([text])
    with pytest.raises(data.NotTripData, match="no such file"):
        data.load_trips([tmp_path / "absent.parquet"])
    with pytest.raises(data.NotTripData, match="no trip files"):
        data.load_trips([])


def trips_lasting(minutes: list[float], start: str = "2021-01-04 08:30:00") -> pd.DataFrame:
    pickup = pd.Timestamp(start)
    n = len(minutes)
    return pd.DataFrame(
        {
            "pickup_datetime": [pickup + pd.Timedelta(hours=i) for i in range(n)],
            "dropoff_datetime": [pickup + pd.Timedelta(hours=i) + pd.Timedelta(minutes=m) for i, m in enumerate(minutes)],
            "PULocationID": list(range(1, n + 1)),
            "DOLocationID": [7] * n,
            "trip_distance": [1.25] * n,
        }
    )


def test_target_is_duration_in_minutes_kept_between_1_and_60():
    X, y = data.make_features(trips_lasting([-5, 0, 0.5, 1, 12.5, 60, 60.5, 600]))
    assert y.tolist() == [1, 12.5, 60]
    assert y.name == data.TARGET
    assert X["PULocationID"].tolist() == [4, 5, 6]  # the kept rows, in order


def test_features_are_typed_and_derived_from_pickup_time():
    X, _ = data.make_features(trips_lasting([10, 10, 10]))  # 2021-01-04 is a Monday
    assert list(X.columns) == list(data.FEATURES)
    assert {c: str(t) for c, t in X.dtypes.items()} == data.FEATURES
    assert X["pickup_hour"].tolist() == [8, 9, 10]
    assert X["pickup_weekday"].tolist() == [0, 0, 0]
    assert X["trip_distance"].tolist() == [1.25] * 3


def test_rows_with_missing_fields_are_dropped():
    trips = trips_lasting([10, 10, 10])
    trips["DOLocationID"] = pd.array([7, None, 7], dtype="Int64")
    X, y = data.make_features(trips)
    assert len(X) == len(y) == 2


def test_rows_come_out_in_pickup_order_and_validation_is_the_latest():
    trips = trips_lasting([10, 20, 30, 40, 50]).iloc[::-1]
    X, y = data.make_features(trips)
    assert y.tolist() == [10, 20, 30, 40, 50]
    X_train, y_train, X_val, y_val = data.split_latest(X, y, validation=0.4)
    assert y_train.tolist() == [10, 20, 30] and y_val.tolist() == [40, 50]
    assert len(X_train) == 3 and len(X_val) == 2


def test_classification_keeps_card_payments_and_labels_tips():
    trips = trips_lasting([10, 10, 10, 10, 0.5])
    trips["payment_type"] = [1.0, 1.0, 2.0, 1.0, 1.0]
    trips["tip_amount"] = [2.5, 0.0, 0.0, None, 3.0]
    X, y = data.make_features(trips, data.CLASSIFICATION)
    # cash (2) tips are not recorded, a missing tip is unknown, 0.5 minutes is not a trip
    assert X["PULocationID"].tolist() == [1, 2]
    assert y.tolist() == [1, 0] and y.name == data.TIP_TARGET and str(y.dtype) == "int64"
    assert {c: str(t) for c, t in X.dtypes.items()} == data.FEATURES


def test_distances_outside_their_range_are_dropped():
    trips = trips_lasting([10, 10, 10, 10])
    trips["trip_distance"] = [-0.5, 0.0, 1000.0, 1000.5]
    X, _ = data.make_features(trips)
    assert X["trip_distance"].tolist() == [0.0, 1000.0]


def test_classification_needs_payment_and_tip_columns(trips_file, tmp_path):
    bad = tmp_path / "no_tips.parquet"
    pq.write_table(pq.read_table(trips_file).drop_columns(["tip_amount"]), bad)
    assert len(data.load_trips([bad]).frame) == 40_000  # regression does not need them
    with pytest.raises(data.NotTripData, match=r"no_tips.parquet: not a TLC green trip file: missing column\(s\) tip_amount"):
        data.load_trips([bad], data.CLASSIFICATION)
