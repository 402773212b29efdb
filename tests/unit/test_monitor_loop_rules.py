"""When the retraining loop retrains (monitor/loop.py triggers)."""

from __future__ import annotations

import pytest

from monitor.loop import triggers


def summary(drifted=(), prediction=False, **quality) -> dict:
    return {"drifted_inputs": list(drifted), "prediction": {"drifted": prediction}, "quality": quality}


@pytest.mark.parametrize("window, expected", [
    (summary(rows=0, validation_rmse=4.0), []),
    (summary(rows=10, rmse=5.0, validation_rmse=4.0), []),
    (summary(["trip_distance"], True), ["input trip_distance drifted", "prediction drifted"]),
    (summary(rows=10, rmse=6.5, validation_rmse=4.0), ["RMSE 6.5 > 1.5 x validation 4"]),
    (summary(rows=10, accuracy=0.6, validation_accuracy=0.7), ["accuracy 0.6 < validation 0.7 - 0.05"]),
    (summary(rows=10, accuracy=0.68, validation_accuracy=0.7), []),
])
def test_drift_or_a_quality_drop_retrains(window, expected):
    assert triggers(window) == expected
