"""`make parity`, fast: every model family through the real Go server and
nginx against sklearn, on fewer rows; and the edge inputs, each shown to get
sklearn's answer or a clear 400 naming the field.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import EveryFamily
from verify import parity
from topology import listening, request
from train import agreement, data, pipeline, synth

# The report's shape, as the issue gives it (other tools read it).
FAMILY_KEYS = ["family", "task", "rows", "max_abs_error", "max_rel_error", "label_agreement",
               "max_proba_abs_error", "within_bound", "worst_rows"]


def test_every_family_answers_like_sklearn_through_the_server_and_nginx(every_family, tmp_path, capsys):
    results = parity.run([str(every_family.trips)], every_family.models, every_family.names, tmp_path,
                         rows=2000, nginx_rows=200)
    with capsys.disabled():
        print()
        for r in results:
            print(parity.summary_line(r))
    assert [r.family for r in results] == list(pipeline.FAMILIES)
    assert all(r.server.rows == 2000 and r.nginx.rows == 200 for r in results)
    assert all(r.within_bound for r in results), [parity.summary_line(r) for r in results if not r.within_bound]

    report = json.loads((tmp_path / "parity.json").read_text())
    assert list(report) == ["families"]
    for entry, family in zip(report["families"], pipeline.FAMILIES):
        assert list(entry) == FAMILY_KEYS
        assert (entry["family"], entry["task"], entry["rows"], entry["within_bound"]) == (
            family, pipeline.task_of(family), 2000, True)
        if entry["task"] == "regression":
            assert 0 <= entry["max_rel_error"] <= agreement.RTOL
            assert entry["label_agreement"] is None and entry["max_proba_abs_error"] is None
        else:
            assert entry["max_rel_error"] is None
            assert entry["label_agreement"] == 1.0 and 0 <= entry["max_proba_abs_error"] <= agreement.PROBA_ATOL
        assert 1 <= len(entry["worst_rows"]) <= parity.WORST_ROWS
        assert set(entry["worst_rows"][0]["instance"]) == set(data.FEATURES)
    table = (tmp_path / "parity.md").read_text()
    assert all(f"| `{family}` |" in table for family in pipeline.FAMILIES)
    assert "8 of 8 families within bound." in table


def test_a_family_that_differs_from_sklearn_fails_parity(every_family, tmp_path, capsys):
    """The server answers with ridge's graph while the published pipeline is
    linear's: parity must say so, show the rows and exit non-zero."""
    models = tmp_path / "models"
    shutil.copytree(every_family.models / "ridge", models / "ridge")
    shutil.copyfile(every_family.models / every_family.names["linear"] / "1" / "pipeline.joblib",
                    models / "ridge" / "1" / "pipeline.joblib")
    code = parity.main(["--data", str(every_family.trips), "--models", str(models), "--families", "ridge",
                 "--rows", "500", "--nginx-rows", "50", "--min-rows", "0", "--out", str(tmp_path / "reports")])
    assert code == 1
    assert "out of bound: ridge" in capsys.readouterr().err
    entry = json.loads((tmp_path / "reports" / "parity.json").read_text())["families"][0]
    assert entry["within_bound"] is False and entry["max_rel_error"] > agreement.RTOL
    assert entry["worst_rows"][0]["within_bound"] is False
    assert "| `ridge` | regression |" in (tmp_path / "reports" / "parity.md").read_text()
    assert "**NO**" in (tmp_path / "reports" / "parity.md").read_text()


def test_parity_refuses_models_trained_on_other_trips(every_family, tmp_path):
    other = synth.write(tmp_path / "other.parquet", rows=20_000, seed=99)
    with pytest.raises(parity.ParityError, match="was trained on other trip files than"):
        parity.run([str(other)], every_family.models, {"linear": every_family.names["linear"]}, tmp_path)


def test_parity_needs_enough_held_out_rows(every_family, tmp_path):
    with pytest.raises(parity.ParityError, match="only 2,000 held-out rows .* at least 10,000"):
        parity.run([str(every_family.trips)], every_family.models, {"linear": every_family.names["linear"]},
                   tmp_path, rows=2000, min_rows=10_000)


def test_parity_stops_the_topology_when_it_fails_midway(every_family, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(every_family.models / "ridge", models / "ridge")
    (models / "ridge" / "1" / "pipeline.joblib").write_bytes(b"not a pickle")  # the server does not read it
    state = tmp_path / "run"
    with pytest.raises(Exception):
        parity.run([str(every_family.trips)], models, {"ridge": "ridge"}, tmp_path, rows=100, state=state)
    nginx_port = int(re.search(r"listen 127\.0\.0\.1:(\d+);", (state / "nginx.conf").read_text())[1])
    replica_port = int(re.search(r"server 127\.0\.0\.1:(\d+)", (state / "nginx.conf").read_text())[1])
    assert (state / "logs" / "replica-1.log").is_file()  # it did start
    assert not listening(nginx_port) and not listening(replica_port)
    assert list(state.glob("*.pid")) == []


# --- edge inputs, against the real server ---------------------------------------

@pytest.fixture(scope="module")
def server(every_family, tmp_path_factory) -> parity.Endpoints:
    with parity.serving(every_family.models, tmp_path_factory.mktemp("run")) as endpoints:
        yield endpoints


def ask(url: str, name: str, rows: list[dict]) -> tuple[int, dict]:
    return parity.post_json(f"{url}/v1/models/{name}:predict", {"instances": rows})


def assert_agrees_with_sklearn(every_family: EveryFamily, family: str, url: str, X: pd.DataFrame) -> None:
    status, body = ask(url, every_family.names[family], parity.instances(X))
    assert status == 200, body
    task = pipeline.task_of(family)
    want, want_proba = parity.sklearn_answers(every_family.pipeline(family), X, task)
    result = parity.compare(task, body["predictions"], want, want_proba)
    assert result.rows == len(X)
    assert result.within_bound, parity.worst_rows(result, "server", X, body["predictions"], want, want_proba,
                                                  np.arange(len(X)))


def with_values(X: pd.DataFrame, column: str, values: list) -> pd.DataFrame:
    """Every row of X once per value, with `column` set to it (dtypes kept)."""
    return pd.concat([X.assign(**{column: X[column].dtype.type(v)}) for v in values], ignore_index=True)


@pytest.mark.parametrize("family", pipeline.FAMILIES)
def test_unseen_categories_are_answered_as_sklearn_answers_them(every_family, server, family):
    """handle_unknown="ignore": a zone, hour or weekday training never saw
    encodes as all zeros, in sklearn and in the graph alike."""
    X = every_family.held_out(family).iloc[:20]
    unseen = pd.concat([with_values(X, "PULocationID", [0, 266, 999, -5]),
                        with_values(X, "DOLocationID", [0, 266, 10**12]),
                        with_values(X, "pickup_hour", [24, -1]),
                        with_values(X, "pickup_weekday", [7])], ignore_index=True)
    assert_agrees_with_sklearn(every_family, family, server.replica, unseen)


@pytest.mark.parametrize("family", pipeline.FAMILIES)
def test_zero_and_the_largest_distances_are_answered_as_sklearn_answers_them(every_family, server, family):
    X = every_family.held_out(family).iloc[:20]
    assert_agrees_with_sklearn(every_family, family, server.replica,
                               with_values(X, "trip_distance", [0.0, 0.01, 250.0, 999.99, 1000.0]))


@pytest.mark.parametrize("distance, message", [
    (1000.01, "is out of range: the model accepts 0 to 1000"),
    (1e6, "is out of range: the model accepts 0 to 1000"),
    (3.4e38, "is out of range: the model accepts 0 to 1000"),
    (-0.5, "is out of range: the model accepts 0 to 1000"),
    (1e39, "is out of range for float32"),
])
@pytest.mark.parametrize("family", ["linear", "random_forest", "logistic_regression"])
def test_distances_beyond_the_range_are_refused_naming_the_field(every_family, server, family, distance, message):
    row = parity.instances(every_family.held_out(family).iloc[:1])[0] | {"trip_distance": distance}
    status, body = ask(server.nginx, every_family.names[family], [row])
    assert (status, body) == (400, {"error": f"instances[0].trip_distance: {json.dumps(distance)} {message}"})


def test_why_large_distances_are_refused_sklearn_overflows_too(every_family):
    """Not an arbitrary limit: at 3.4e38 miles sklearn's linear pipeline
    (float32 features) predicts +Inf minutes, and at 1e30 3.7e30 minutes."""
    X = with_values(every_family.held_out("linear").iloc[:1], "trip_distance", [1e30, 3.4e38])
    want = every_family.pipeline("linear").predict(X)
    assert want[0] > 1e29 and np.isinf(want[1])


def _row(every_family: EveryFamily, family: str) -> dict:
    return parity.instances(every_family.held_out(family).iloc[:1])[0]


@pytest.mark.parametrize("family", ["ridge", "random_forest_classifier"])
@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("trip_distance"), "instances[0].trip_distance: missing"),
    (lambda r: r.update(pickup_hour=None), "instances[0].pickup_hour: must not be null"),
    (lambda r: r.update(trip_distance="far"), 'instances[0].trip_distance: expected a number, got string "far"'),
    (lambda r: r.update(trip_distance="2.5"), 'instances[0].trip_distance: expected a number, got string "2.5"'),
    (lambda r: r.update(PULocationID="74"), 'instances[0].PULocationID: expected an integer, got string "74"'),
    (lambda r: r.update(trip_distance="NaN"), 'instances[0].trip_distance: expected a number, got string "NaN"'),
    (lambda r: r.update(PULocationID=74.5), "instances[0].PULocationID: expected an integer, got 74.5"),
    (lambda r: r.update(pickup_weekday=True), "instances[0].pickup_weekday: expected an integer, got true"),
    (lambda r: r.update(fare_amount=12.5), "instances[0].fare_amount: unknown field"),
])
def test_malformed_fields_are_refused_naming_the_field(every_family, server, family, edit, message):
    row = _row(every_family, family)
    edit(row)
    status, body = ask(server.nginx, every_family.names[family], [row])
    assert status == 400 and body["error"].startswith(message), body


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_refused_naming_the_field(every_family, server, literal):
    """Python's json writes them; JSON has no such numbers."""
    row = _row(every_family, "linear") | {"trip_distance": float(literal.replace("Infinity", "inf"))}
    body = json.dumps({"instances": [row]})  # allow_nan: writes the bare literal
    assert literal in body
    url = f"{server.replica}/v1/models/{every_family.names['linear']}:predict"
    status, answer = request("POST", url, body.encode())
    assert status == 400
    assert answer["error"].startswith("instances[0].trip_distance: malformed JSON at byte")
    assert "NaN and Infinity are not JSON numbers" in answer["error"]


def test_an_empty_instance_list_is_refused(every_family, server):
    status, body = ask(server.nginx, every_family.names["linear"], [])
    assert (status, body) == (400, {"error": "instances: must contain at least one instance"})


@pytest.mark.parametrize("family", pipeline.FAMILIES)
def test_a_10000_row_request_is_answered_as_sklearn_answers_it(every_family, server, family):
    held_out = every_family.held_out(family)
    X = held_out.iloc[np.arange(10_000) % len(held_out)].reset_index(drop=True)
    url = server.nginx if family in ("linear", "hist_gradient_boosting_classifier") else server.replica
    assert_agrees_with_sklearn(every_family, family, url, X)
