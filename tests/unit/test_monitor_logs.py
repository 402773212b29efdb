"""monitor/logs.py: a window of the replicas' inference log, per model version,
with the ground truth joined from the log and from dropped files."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

import inference_log
from monitor import logs

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
X = pd.DataFrame({"PULocationID": [74, 99, 7, 8], "DOLocationID": [75, 99, 9, 9],
                  "trip_distance": [2.5, 1.08, 3.0, 0.5], "pickup_hour": [8, 17, 1, 2], "pickup_weekday": [1, 0, 3, 4]})


def test_window_holds_each_versions_rows_and_joins_actuals(tmp_path):
    old = NOW - timedelta(hours=3)
    a = inference_log.write_log(tmp_path, "replica-1", X, [10.0, 11.0, 12.0, 13.0], "trip_duration", 1,
                                NOW - timedelta(minutes=10), batch=2, actuals=[9.0, 12.0, 12.5, 14.0])
    inference_log.write_log(tmp_path, "replica-2", X.iloc[:2], [20.0, 21.0], "trip_duration", 2,
                            NOW - timedelta(minutes=5), batch=2)
    inference_log.write_log(tmp_path, "replica-2", X.iloc[:2], [1, 0], "tip_given", 1, NOW - timedelta(minutes=5),
                            probabilities=[[0.2, 0.8], [0.7, 0.3]])
    inference_log.write_log(tmp_path, "replica-2", X.iloc[:1], [5.0], "trip_duration", 1, old)  # before the window
    (tmp_path / "inference" / "replica-1" / "inference-0.jsonl").open("a").write('{"specversion": "1.0", "id"')
    b = inference_log.write_log(tmp_path, "replica-2", X.iloc[:2], [30.0, 31.0], "trip_duration", 2,
                                NOW - timedelta(minutes=4), batch=2)
    drop = tmp_path / "inference" / "actuals"
    drop.mkdir()
    (drop / "late.csv").write_text(f"request_id,row,actual\n{b[0]},1,33.5\nnot,a,number\n")
    (drop / "late.jsonl").write_text(json.dumps({"type": "org.skl2go.actual", "data": {
        "requestid": b[0], "row": 0, "actual": 29.0}}) + "\n")

    window = logs.read(tmp_path, NOW - timedelta(hours=1), NOW)
    assert sorted(window.frames) == [("tip_given", 1), ("trip_duration", 1), ("trip_duration", 2)]
    v1 = window.frames[("trip_duration", 1)]
    assert len(v1) == 4 and v1["requestid"].tolist() == [a[0], a[0], a[1], a[1]] and v1["row"].tolist() == [0, 1, 0, 1]
    assert v1["actual"].tolist() == [9.0, 12.0, 12.5, 14.0]
    assert v1[list(X.columns)].astype(float).equals(X.astype(float))
    assert v1["source"].eq("skl2go/replica-1").all() and v1["time"].dt.tz is not None
    v2 = window.frames[("trip_duration", 2)]
    assert v2["prediction"].tolist() == [20.0, 21.0, 30.0, 31.0]
    assert v2["actual"].tolist()[2:] == [29.0, 33.5] and v2["actual"].isna().sum() == 2
    tips = window.frames[("tip_given", 1)]
    assert tips["probability"].tolist() == [0.8, 0.3]
    assert window.skipped == 2  # the cut-short line and the CSV row that is not one
    assert window.actuals == 6

    only = logs.read(tmp_path, NOW - timedelta(hours=1), NOW, model="tip_given")
    assert list(only.frames) == [("tip_given", 1)]
    assert len(logs.read(tmp_path, NOW - timedelta(hours=4), NOW).frames[("trip_duration", 1)]) == 5


def test_no_log_is_an_error_naming_the_directory(tmp_path):
    with pytest.raises(logs.LogError, match=f"{tmp_path / 'inference'} does not exist"):
        logs.read(tmp_path, NOW - timedelta(hours=1), NOW)


@pytest.mark.parametrize("text, expected", [
    ("30m", NOW - timedelta(minutes=30)),
    ("24h", NOW - timedelta(hours=24)),
    ("7d", NOW - timedelta(days=7)),
    ("2026-12-06T10:00:00Z", datetime(2026, 12, 6, 10, tzinfo=timezone.utc)),
    ("2026-12-06T10:00:00", datetime(2026, 12, 6, 10, tzinfo=timezone.utc)),
])
def test_since_is_a_duration_or_a_time(text, expected):
    assert logs.parse_since(text, NOW) == expected


def test_since_that_is_neither_names_the_value():
    with pytest.raises(logs.LogError, match="SINCE='yesterday'"):
        logs.parse_since("yesterday", NOW)
