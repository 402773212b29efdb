"""The bounds export and parity hold every row to."""

from __future__ import annotations

import math

import numpy as np

from train import agreement


def test_regression_bound_is_relative_with_a_one_minute_floor():
    want = np.array([10.0, 0.002, 30.0, -0.5])
    got = np.array([10.0009, 0.00209, 30.0, -0.50005])
    result = agreement.regression(got, want)
    assert result.within_bound
    assert result.rows == 4
    assert math.isclose(result.max_rel_error, 9e-5, rel_tol=1e-6)  # 0.0009 / 10, and 0.00009 / 1 (floor)
    assert math.isclose(result.max_true_rel_error, 0.045, rel_tol=1e-6)  # 0.00009 / 0.002
    assert math.isclose(result.max_abs_error, 0.0009, rel_tol=1e-6)


def test_regression_names_the_rows_out_of_bound_worst_first():
    want = np.array([10.0, 20.0, 0.5, 40.0])
    got = np.array([10.0, 20.01, 0.5003, math.nan])  # 5e-4 relative, 3e-4 under the floor, no answer
    result = agreement.regression(got, want)
    assert not result.within_bound
    assert result.out_of_bound.tolist() == [False, True, True, True]
    assert result.worst.tolist()[:3] == [3, 1, 2]
    assert result.max_rel_error == math.inf  # the missing answer


def test_classification_needs_identical_labels_and_close_probabilities():
    want_labels = np.array([1, 0, 1])
    want_proba = np.array([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    same = agreement.classification(want_labels, want_proba + 5e-6, want_labels, want_proba)
    assert same.within_bound and same.label_agreement == 1.0
    assert math.isclose(same.max_proba_abs_error, 5e-6, rel_tol=1e-6)

    other_label = agreement.classification([1, 1, 1], want_proba, want_labels, want_proba)
    assert not other_label.within_bound
    assert math.isclose(other_label.label_agreement, 2 / 3)
    assert other_label.worst[0] == 1

    far = want_proba.copy()
    far[2] += [2e-5, -2e-5]
    drifted = agreement.classification(want_labels, far, want_labels, want_proba)
    assert not drifted.within_bound and drifted.label_agreement == 1.0
    assert drifted.out_of_bound.tolist() == [False, False, True]
