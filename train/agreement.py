"""How closely another runtime's answers agree with sklearn's, and the bounds.

Export compares ONNX Runtime in-process with sklearn; parity compares the
Go server's HTTP answers with sklearn. Both use these functions, so both
hold every row to the same bounds:

- regression: |got - want| <= RTOL * max(|want|, FLOOR) on every row, i.e.
  relative error 1e-4, where a prediction under 1 minute counts as 1 minute.
  float32 arithmetic sums terms of ~10 minutes with ~1e-6 rounding, so a
  linear model predicting 0.0004 minutes can be 1e-6 minutes (60 µs) off:
  a 2.5e-3 *relative* error that is no error at all for a trip duration.
  The true relative error |got - want| / |want| is reported beside it.
- classification: the label identical to `predict` on every row, and every
  class probability within PROBA_ATOL of `predict_proba`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RTOL = 1e-4
FLOOR = 1.0  # minutes
PROBA_ATOL = 1e-5


@dataclass
class Agreement:
    """Agreement over a set of rows; the *_error fields are maxima over rows."""

    task: str
    rows: int
    max_abs_error: float  # regression: |got - want|; classification: over the probabilities
    max_rel_error: float | None  # regression: |got - want| / max(|want|, FLOOR), the bounded quantity
    max_true_rel_error: float | None  # regression: |got - want| / |want|
    label_agreement: float | None  # classification: share of rows with the same label
    max_proba_abs_error: float | None  # classification
    within_bound: bool
    worst: np.ndarray  # row indices, worst first (rows out of bound first)
    row_error: np.ndarray  # per row: the bounded quantity (regression) or max proba error (classification)
    out_of_bound: np.ndarray  # per row: True where the row misses its bound


def regression(got: np.ndarray, want: np.ndarray, worst: int = 10) -> Agreement:
    """Compare predictions row by row (NaN or a missing answer counts as out of bound)."""
    got, want = np.asarray(got, dtype=np.float64).reshape(-1), np.asarray(want, dtype=np.float64).reshape(-1)
    _same_rows(got, want)
    abs_err = np.abs(got - want)
    rel_err = abs_err / np.maximum(np.abs(want), FLOOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        true_rel = np.where(want == 0, np.where(abs_err == 0, 0.0, np.inf), abs_err / np.abs(want))
    score = np.nan_to_num(rel_err, nan=np.inf)
    out = ~(score <= RTOL)
    return Agreement(
        task="regression",
        rows=len(want),
        max_abs_error=_max(abs_err),
        max_rel_error=_max(rel_err),
        max_true_rel_error=_max(true_rel),
        label_agreement=None,
        max_proba_abs_error=None,
        within_bound=not out.any(),
        worst=np.argsort(-score, kind="stable")[:worst],
        row_error=rel_err,
        out_of_bound=out,
    )


def classification(got_labels: np.ndarray, got_proba: np.ndarray, want_labels: np.ndarray,
                   want_proba: np.ndarray, worst: int = 10) -> Agreement:
    """Compare labels exactly and class probabilities within PROBA_ATOL."""
    got_labels, want_labels = np.asarray(got_labels).reshape(-1), np.asarray(want_labels).reshape(-1)
    got_proba = np.asarray(got_proba, dtype=np.float64)
    want_proba = np.asarray(want_proba, dtype=np.float64)
    _same_rows(got_labels, want_labels)
    if got_proba.shape != want_proba.shape:
        raise ValueError(f"probabilities of shape {got_proba.shape}, sklearn's have {want_proba.shape}")
    proba_err = np.nan_to_num(np.abs(got_proba - want_proba), nan=np.inf).max(axis=1, initial=0.0)
    same = got_labels == want_labels
    # Rows with another label come first, then the largest probability errors.
    score = np.where(same, proba_err, np.inf)
    out = ~(score <= PROBA_ATOL)
    return Agreement(
        task="classification",
        rows=len(want_labels),
        max_abs_error=_max(proba_err),
        max_rel_error=None,
        max_true_rel_error=None,
        label_agreement=float(same.mean()) if len(same) else 1.0,
        max_proba_abs_error=_max(proba_err),
        within_bound=not out.any(),
        worst=np.argsort(-score, kind="stable")[:worst],
        row_error=proba_err,
        out_of_bound=out,
    )


def _same_rows(got: np.ndarray, want: np.ndarray) -> None:
    if len(got) != len(want):
        raise ValueError(f"{len(got):,} answers for {len(want):,} rows")


def _max(values: np.ndarray) -> float:
    return float(np.nan_to_num(values, nan=np.inf).max(initial=0.0))
