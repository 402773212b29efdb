"""What can be trained: the model families, the task each solves, the model
name each task publishes under by default, and the files `python -m train
fit` leaves in build/<name>/ for export and the load tests. Standard library
only, so the Makefile can read these lists before the environment exists
(python -m train families | classifiers | name FAMILY) and a Locust process
can find the held-out rows without importing sklearn.
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

# build/<name>/ after fit: the fitted pipeline (repository.PIPELINE_FILE), the
# held-out rows (features and target) and the training summary.
VALIDATION_FILE = "validation.parquet"
TRAINING_FILE = "training.json"
# A sample of the training inputs, kept by export as the version's reference
# data (repository.REFERENCE_FILE): what the monitor compares live traffic with.
REFERENCE_SAMPLE_FILE = "reference.parquet"
REFERENCE_ROWS = 5_000


def task_of(family: str) -> str:
    """Return the task ("regression" or "classification") a family solves."""
    if family not in TASKS:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    return TASKS[family]
