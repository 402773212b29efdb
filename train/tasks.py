"""What can be trained: the model families, the task each solves, and the
model name each task publishes under by default. Standard library only, so
the Makefile can read these lists before the environment exists
(python -m train families | classifiers | name FAMILY).
"""

from __future__ import annotations

REGRESSION, CLASSIFICATION = "regression", "classification"
# The name a model is published under unless told otherwise, per task.
DEFAULT_NAMES = {REGRESSION: "trip_duration", CLASSIFICATION: "tip_given"}

# Each family and its task, in the order reports list them.
TASKS: dict[str, str] = {
    "linear": REGRESSION,
    "ridge": REGRESSION,
    "random_forest": REGRESSION,
    "hist_gradient_boosting": REGRESSION,
    "gradient_boosting": REGRESSION,
    "logistic_regression": CLASSIFICATION,
    "random_forest_classifier": CLASSIFICATION,
    "hist_gradient_boosting_classifier": CLASSIFICATION,
}
FAMILIES = tuple(TASKS)


def task_of(family: str) -> str:
    """Return the task ("regression" or "classification") a family solves."""
    if family not in TASKS:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    return TASKS[family]
