"""python -m train import without a server: the course's model, refusals,
nullable inputs, and trees that split exactly where sklearn does."""

from __future__ import annotations

import json
import pickle

import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, GradientBoostingClassifier,
                              GradientBoostingRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from lightgbm import LGBMClassifier, LGBMRegressor
from skl2onnx import to_onnx

from train.__main__ import main
from train.importer import convert, run
from verify import imports


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("import-files")
    imports.write(out, only=["DictVectorizer", "LinearRegression"])
    return out


def session(version_dir) -> ort.InferenceSession:
    return ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("pipeline", ["lin_reg.bin", "course_pipeline.joblib"])
def test_course_model_serves_one_input_per_key_and_unseen_zones_as_zeros(files, tmp_path, pipeline):
    if pipeline == "course_pipeline.joblib":
        imports.course_joblib(files)
    version = run.import_pipeline(files / pipeline, files / "course_records.jsonl", "course_duration", tmp_path)
    meta = json.loads((version / "model.json").read_text())
    assert [(i["name"], i["type"]) for i in meta["inputs"]] == [("PU_DO", "tensor(string)"),
                                                                ("trip_distance", "tensor(double)")]
    assert meta["parity"]["rows"] == 300 and meta["parity"]["max_true_rel_error"] < 1e-12

    # A batch of three, one with a zone pair the vectorizer never saw: sklearn encodes it as zeros.
    records = [{"PU_DO": "1_2", "trip_distance": 1.8}, {"PU_DO": "never_seen", "trip_distance": 1.8},
               {"PU_DO": "3_4", "trip_distance": 0.5}]
    dv, lr = pickle.loads((files / "lin_reg.bin").read_bytes()) if pipeline == "lin_reg.bin" else \
        joblib.load(files / pipeline).steps and [s for _, s in joblib.load(files / pipeline).steps]
    got = session(version).run(None, {"PU_DO": np.array([[r["PU_DO"]] for r in records], dtype=object),
                                      "trip_distance": np.array([[r["trip_distance"]] for r in records])})[0]
    want = lr.predict(dv.transform(records))
    np.testing.assert_allclose(got.ravel(), want, rtol=1e-12)
    assert got[1, 0] == pytest.approx(lr.intercept_ + lr.coef_[dv.vocabulary_["trip_distance"]] * 1.8, rel=1e-12)
    # pipeline.joblib takes a DataFrame of requests, like every published version
    published = joblib.load(version / "pipeline.joblib")
    np.testing.assert_allclose(published.predict(pd.DataFrame(records)), want, rtol=1e-12)
    # The sample with the graph's answers is the version's reference data for the monitor.
    reference = pd.read_parquet(version / "reference.parquet")
    assert list(reference.columns) == ["PU_DO", "trip_distance", "prediction"] and len(reference) == 300
    np.testing.assert_allclose(reference["prediction"], published.predict(reference[["PU_DO", "trip_distance"]]),
                               rtol=1e-6)


def test_imputed_columns_are_nullable_and_no_other(files, tmp_path):
    version = run.import_pipeline(files / "byop_linear_regression.joblib", files / "trips_sample.parquet",
                                  "imputed", tmp_path)
    inputs = {i["name"]: i for i in json.loads((version / "model.json").read_text())["inputs"]}
    assert [name for name, spec in inputs.items() if spec.get("nullable")] == ["tip"]
    assert inputs["zone"]["type"] == "tensor(string)" and inputs["hour"]["type"] == "tensor(int64)"
    assert inputs["tip"]["type"] == "tensor(double)"
    # an example with a missing tip is recorded as JSON null, not NaN
    text = (version / "model.json").read_text()
    assert "NaN" not in text


class Doubler(BaseEstimator, RegressorMixin):
    """A custom estimator the import cannot know."""

    def fit(self, X, y):
        self.coef_ = 2.0
        return self

    def predict(self, X):
        return np.asarray(X)[:, 0] * self.coef_


def refused_pipelines(files, tmp_path):
    X = pd.read_parquet(files / "trips_sample.parquet")
    y = X["distance"] * 3
    numeric = ["distance", "fare"]
    log_step = ColumnTransformer([("log", FunctionTransformer(np.log1p), numeric)])
    return {
        "a Python function": (make_pipeline(log_step, LinearRegression()).fit(X, y),
                              ["'columntransformer/log'", "FunctionTransformer", "supported transformers"]),
        "a custom class": (make_pipeline(ColumnTransformer([("n", "passthrough", numeric)]), Doubler()).fit(X, y),
                           ["'doubler'", "Doubler", "estimators: LinearRegression"]),
        "an unfitted model": (make_pipeline(OneHotEncoder(), LinearRegression()),
                              ["'onehotencoder'", "OneHotEncoder", "is not fitted"]),
        "native categories": (make_pipeline(ColumnTransformer([("n", "passthrough", ["hour", "distance"])]),
                                            HistGradientBoostingRegressor(max_iter=5, categorical_features=[0]))
                              .fit(X, y), ["converting", "HistGradientBoostingRegressor", "categorical"]),
    }


@pytest.mark.parametrize("case", ["a Python function", "a custom class", "an unfitted model", "native categories"])
def test_steps_that_cannot_be_converted_are_refused_by_name(files, tmp_path, capsys, case):
    pipeline, words = refused_pipelines(files, tmp_path)[case]
    path = tmp_path / "model.joblib"
    joblib.dump(pipeline, path)
    models = tmp_path / "models"
    code = main(["import", "--pipeline", str(path), "--sample", str(files / "trips_sample.parquet"),
                 "--name", "refused", "--models", str(models)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    for word in words:
        assert word in err
    assert not (models / "refused").exists() or not any((models / "refused").iterdir())


def bad_file_cases(files, tmp_path):
    not_pickle = tmp_path / "model.bin"
    not_pickle.write_bytes(b"PK\x03\x04 this is a zip, not a pickle")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    other_columns = tmp_path / "other.csv"
    pd.read_parquet(files / "trips_sample.parquet").drop(columns=["fare"]).assign(price=1.0).to_csv(other_columns)
    pipeline, sample = files / "byop_linear_regression.joblib", files / "trips_sample.parquet"
    return {
        "not a pickle": (not_pickle, sample, "not a joblib or pickle file"),
        "empty sample": (pipeline, empty, "the sample is empty"),
        "columns that do not match": (pipeline, other_columns, "missing ['fare']"),
        "no such file": (tmp_path / "nowhere.bin", sample, "no such file"),
        "a sample of another kind": (pipeline, files / "byop_linear_regression.joblib", "a sample is .parquet, .csv or .jsonl"),
        "course keys that do not match": (files / "lin_reg.bin", other_columns, "DictVectorizer"),
    }


@pytest.mark.parametrize("case", ["not a pickle", "empty sample", "columns that do not match", "no such file",
                                  "a sample of another kind", "course keys that do not match"])
def test_bad_files_get_one_clear_line(files, tmp_path, capsys, case):
    pipeline, sample, words = bad_file_cases(files, tmp_path)[case]
    models = tmp_path / "models"
    code = main(["import", "--pipeline", str(pipeline), "--sample", str(sample), "--name", "bad",
                 "--models", str(models)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and words in err, err
    assert not models.exists()


# --- trees fitted on float64 data: every decision as sklearn's ---------------

TREES = {
    "DecisionTreeRegressor": DecisionTreeRegressor(max_depth=10, random_state=0),
    "RandomForestRegressor": RandomForestRegressor(n_estimators=20, max_depth=10, random_state=0),
    "ExtraTreesRegressor": ExtraTreesRegressor(n_estimators=20, max_depth=10, random_state=0),
    "GradientBoostingRegressor": GradientBoostingRegressor(n_estimators=40, max_depth=4, random_state=0),
    "HistGradientBoostingRegressor": HistGradientBoostingRegressor(max_iter=40, random_state=0),
    "DecisionTreeClassifier": DecisionTreeClassifier(max_depth=10, random_state=0),
    "RandomForestClassifier": RandomForestClassifier(n_estimators=20, max_depth=10, random_state=0),
    "ExtraTreesClassifier": ExtraTreesClassifier(n_estimators=20, max_depth=10, random_state=0),
    "GradientBoostingClassifier": GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0),
    "HistGradientBoostingClassifier": HistGradientBoostingClassifier(max_iter=40, random_state=0),
    "LGBMRegressor": LGBMRegressor(n_estimators=40, num_leaves=15, random_state=0, verbose=-1),
    "LGBMClassifier": LGBMClassifier(n_estimators=40, num_leaves=15, random_state=0, verbose=-1),
}


def thresholds(estimator) -> np.ndarray:
    """Every split threshold (feature 0) of a fitted ensemble, as sklearn stores them (float64)."""
    name = type(estimator).__name__
    if name.startswith("LGBM"):
        found = []

        def walk(node):
            if "split_feature" in node:
                if node["split_feature"] == 0:
                    found.append(node["threshold"])
                walk(node["left_child"]), walk(node["right_child"])

        for tree in estimator.booster_.dump_model()["tree_info"]:
            walk(tree["tree_structure"])
        return np.array(found)
    if name.startswith("Hist"):
        nodes = [p.nodes for it in estimator._predictors for p in it]
        return np.concatenate([n["num_threshold"][(n["is_leaf"] == 0) & (n["feature_idx"] == 0)] for n in nodes])
    trees = ([estimator] if name.startswith("DecisionTree") else
             list(np.ravel(estimator.estimators_)))
    return np.concatenate([t.tree_.threshold[t.tree_.feature == 0] for t in trees])


def adversarial(estimator, rng) -> pd.DataFrame:
    """Inputs where float32 rounding decides: at each threshold, its float32 neighbours, and doubles between."""
    t = thresholds(estimator)
    t32 = t.astype(np.float32)
    values = np.concatenate([
        t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), t32.astype(np.float64),
        np.nextafter(t32, np.float32(-np.inf)).astype(np.float64), np.nextafter(t32, np.float32(np.inf)).astype(np.float64),
        (t + t32.astype(np.float64)) / 2,
    ])
    if type(estimator).__name__.startswith(("Hist", "LGBM")):  # they take NaN themselves
        values = np.concatenate([values, np.full(50, np.nan)])
    other = rng.normal(size=len(values))
    return pd.DataFrame({"a": values, "b": other})


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # thresholds of 1e300
@pytest.mark.parametrize("family", list(TREES))
def test_trees_fitted_on_float64_split_exactly_as_sklearn(family, tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=3000) * 10, "b": rng.normal(size=3000)})
    if family.startswith(("Hist", "LGBM")):
        X.loc[::10, "a"] = np.nan  # trained with missing values: each split learns where NaN goes
    y = np.sin(X["a"].fillna(0)) + X["b"] ** 2
    estimator = TREES[family]
    classifier = family.endswith("Classifier")
    if classifier:
        y = np.digitize(y, np.quantile(y, [0.5] if "Gradient" not in family else [1 / 3, 2 / 3]))
    model = make_pipeline(ColumnTransformer([("raw", "passthrough", ["a", "b"])]), estimator).fit(X, y)
    rows = pd.concat([adversarial(estimator, rng), X], ignore_index=True)
    onnx_model = convert.convert(model, rows)
    got = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"a": rows[["a"]].to_numpy(), "b": rows[["b"]].to_numpy()})
    # skl2onnx's own converter (float32 input), for the record; LightGBM has none in skl2onnx
    before = None
    if not family.startswith("LGBM"):
        plain = to_onnx(model, rows.astype(np.float32).iloc[:1],
                        options={id(estimator): {"zipmap": False}} if classifier else None)
        before = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"a": rows[["a"]].to_numpy(np.float32), "b": rows[["b"]].to_numpy(np.float32)})
    if classifier:
        want = model.predict_proba(rows)
        assert (got[0] == model.predict(rows)).all()
        error = np.abs(got[1] - want).max()
        flips_before = before and int((np.abs(before[1] - want).max(axis=1) > 1e-5).sum())
        assert error <= 6e-8  # float32 probabilities: the rounding of the output only
    else:
        want = model.predict(rows)
        error = float(np.max(np.abs(got[0].ravel() - want) / np.maximum(np.abs(want), 1.0)))
        flips_before = before and int((np.abs(before[0].ravel() - want) / np.maximum(np.abs(want), 1.0) > 1e-4).sum())
        assert error <= 1e-12  # double all the way: the same leaves, summed in another order at most
    with capsys.disabled():
        print(f"\n{family}: {len(rows):,} rows ({len(rows) - len(X):,} at thresholds): max error {error:.1e}"
              + (f"; skl2onnx's float32 converter off on {flips_before:,} rows" if before else ""))


def test_docs_table_lists_every_supported_step_and_nothing_else():
    from train.importer import supported

    text = (imports.Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text()
    table = text[text.index(imports.BEGIN):text.index(imports.END)]
    listed = {cell.split(".")[-1] for cell in
              (line.split("|")[1].strip().strip("`") for line in table.splitlines()[3:] if line.startswith("|"))}
    assert listed - {"'passthrough'`, `'drop'"} == set(supported.TRANSFORMERS) | set(supported.ESTIMATORS)
    # and each has its measured figures (an example imported), not a blank
    for cls in supported.ESTIMATORS:
        row = next(line for line in table.splitlines() if f".{cls}`" in line)
        assert "edge" in row, row


def test_course_records_with_integer_numbers_are_doubles(files, tmp_path):
    sample = tmp_path / "records.jsonl"
    sample.write_text('{"PU_DO": "1_2", "trip_distance": 2}\n{"PU_DO": "3_4", "trip_distance": 5}\n')
    version = run.import_pipeline(files / "lin_reg.bin", sample, "course_duration", tmp_path / "models")
    inputs = json.loads((version / "model.json").read_text())["inputs"]
    assert [(i["name"], i["type"]) for i in inputs] == [("PU_DO", "tensor(string)"), ("trip_distance", "tensor(double)")]
