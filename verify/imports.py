"""A fitted example of every step `python -m train import` supports, and the
docs table of them with measured agreement.

    python -m verify.imports --out build/imports [--docs docs/import.md]

Each example is a pipeline a data scientist could bring, fitted on
deterministic synthetic trips: a ColumnTransformer that uses every supported
transformer (string and integer one-hot with unseen and infrequent
categories, scalers, an imputed column, passthrough, drop) before one
estimator, plus the course's DictVectorizer + LinearRegression as a pickled
tuple. `write` saves each as a pipeline file and a sample file, exactly what
the import command takes; the system tests import them all and check each
through the running server (tests/system/test_import_served.py). With --docs, the
table in docs/import.md is rewritten from supported.py and the figures
measured here.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, GradientBoostingClassifier,
                              GradientBoostingRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)
from sklearn.feature_extraction import DictVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge, SGDRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from train.importer import supported

TRAIN_ROWS = 1500
SAMPLE_ROWS = 300
SEED = 11


def trips(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Request records (strings, integers, floats with missing values) and a duration in minutes."""
    rng = np.random.default_rng(seed)
    zones = np.array([f"Z{z:02d}" for z in range(30)])
    weights = np.r_[np.full(26, 1.0), np.full(4, 0.02)]  # four rare zones: infrequent categories
    frame = pd.DataFrame({
        "zone": rng.choice(zones, rows, p=weights / weights.sum()).astype(object),
        "hour": rng.integers(0, 24, rows).astype(np.int64),
        "distance": rng.gamma(2.0, 1.6, rows),
        "fare": rng.normal(14.0, 4.0, rows),
        "tip": np.where(rng.random(rows) < 0.2, np.nan, rng.gamma(1.5, 1.2, rows)),
        "passengers": rng.integers(1, 5, rows).astype(np.float64),
        "vendor": rng.choice(np.array(["CMT", "VTS"]), rows).astype(object),
    })
    zone_effect = np.array([int(z[1:]) % 7 for z in frame["zone"]], dtype=np.float64)
    minutes = (3.0 * frame["distance"] + 0.4 * zone_effect + np.where(frame["hour"].between(7, 9), 4.0, 0.0)
               + 0.3 * frame["fare"] - 0.5 * frame["tip"].fillna(1.0) + rng.normal(0, 1.5, rows))
    return frame, minutes.to_numpy()


def features() -> ColumnTransformer:
    return ColumnTransformer([
        ("zone", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=30, sparse_output=False), ["zone"]),
        ("hour", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["hour"]),
        ("distance", StandardScaler(), ["distance"]),
        ("fare", MinMaxScaler(), ["fare"]),
        ("tip", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["tip"]),
        ("passengers", "passthrough", ["passengers"]),
        ("vendor", "drop", ["vendor"]),
    ])


def estimators() -> dict[str, object]:
    """One small fitted-to-be instance of every supported estimator, by class name."""
    found = {
        "LinearRegression": LinearRegression(),
        "Ridge": Ridge(alpha=1.0),
        "Lasso": Lasso(alpha=0.01),
        "ElasticNet": ElasticNet(alpha=0.01, l1_ratio=0.5),
        "SGDRegressor": SGDRegressor(random_state=SEED),
        "DecisionTreeRegressor": DecisionTreeRegressor(max_depth=8, random_state=SEED),
        "RandomForestRegressor": RandomForestRegressor(n_estimators=10, max_depth=8, random_state=SEED),
        "ExtraTreesRegressor": ExtraTreesRegressor(n_estimators=10, max_depth=8, random_state=SEED),
        "GradientBoostingRegressor": GradientBoostingRegressor(n_estimators=30, max_depth=4, random_state=SEED),
        "HistGradientBoostingRegressor": HistGradientBoostingRegressor(max_iter=30, random_state=SEED),
        "LogisticRegression": LogisticRegression(max_iter=1000),
        "DecisionTreeClassifier": DecisionTreeClassifier(max_depth=8, random_state=SEED),
        "RandomForestClassifier": RandomForestClassifier(n_estimators=10, max_depth=8, random_state=SEED),
        "ExtraTreesClassifier": ExtraTreesClassifier(n_estimators=10, max_depth=8, random_state=SEED),
        "GradientBoostingClassifier": GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=SEED),
        "HistGradientBoostingClassifier": HistGradientBoostingClassifier(max_iter=30, random_state=SEED),
    }
    try:
        from xgboost import XGBClassifier, XGBRegressor

        found["XGBRegressor"] = XGBRegressor(n_estimators=30, max_depth=4, random_state=SEED, n_jobs=1)
        found["XGBClassifier"] = XGBClassifier(n_estimators=30, max_depth=4, random_state=SEED, n_jobs=1)
    except ImportError:
        pass
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor

        found["LGBMRegressor"] = LGBMRegressor(n_estimators=30, num_leaves=15, random_state=SEED, n_jobs=1, verbose=-1)
        found["LGBMClassifier"] = LGBMClassifier(n_estimators=30, num_leaves=15, random_state=SEED, n_jobs=1,
                                                 verbose=-1)
    except ImportError:
        pass
    return found


@dataclass
class Example:
    name: str  # model name in the repository (and URL)
    estimator: str  # the class it exercises
    task: str
    pipeline: Path
    sample: Path


def model_name(estimator: str) -> str:
    """byop_ and the class in snake case: SGDRegressor -> byop_sgd_regressor."""
    return "byop_" + re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", estimator).lower()


def write(out: Path, only: list[str] | None = None) -> list[Example]:
    """Fit the examples (all, or the estimator classes in `only`) and write their pipeline and sample files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    X, minutes = trips(TRAIN_ROWS, SEED)
    sample, _ = trips(SAMPLE_ROWS, SEED + 1)
    sample_file = out / "trips_sample.parquet"
    sample.to_parquet(sample_file)
    examples = []
    for estimator_name, estimator in estimators().items():
        if only is not None and estimator_name not in only:
            continue
        classifier = estimator_name in supported.CLASSIFIERS
        y = (minutes > np.median(minutes)).astype(np.int64) if classifier else minutes
        if classifier and estimator_name.startswith(("DecisionTree", "GradientBoosting", "HistGradient")):
            y = np.digitize(minutes, np.quantile(minutes, [1 / 3, 2 / 3]))  # three classes: softmax, per-class trees
        pipe = Pipeline([("features", features()), ("model", estimator)]).fit(X, y)
        path = out / f"{model_name(estimator_name)}.joblib"
        joblib.dump(pipe, path)
        examples.append(Example(model_name(estimator_name), estimator_name,
                                "classification" if classifier else "regression", path, sample_file))
    if only is None or "DictVectorizer" in only:
        examples.append(course(out))
    return examples


def course_records(rows: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """The MLOps course's records: PU_DO, a pickup_dropoff zone pair as a string, and trip_distance."""
    rng = np.random.default_rng(seed)
    pickup, dropoff = rng.integers(1, 40, rows), rng.integers(1, 40, rows)
    distance = np.round(rng.gamma(2.0, 1.5, rows), 2)
    records = [{"PU_DO": f"{a}_{b}", "trip_distance": float(d)} for a, b, d in zip(pickup, dropoff, distance)]
    return records, 3.0 * distance + (pickup % 5) + rng.normal(0, 1, rows)


def course(out: Path) -> Example:
    """The course's model saved as the course does: pickle.dump((dv, lr), f_out)."""
    records, y = course_records(TRAIN_ROWS, SEED)
    dv = DictVectorizer()
    lr = LinearRegression().fit(dv.fit_transform(records), y)
    path = out / "lin_reg.bin"
    with open(path, "wb") as f_out:
        pickle.dump((dv, lr), f_out)
    sample = out / "course_records.jsonl"
    sample.write_text("".join(json.dumps(r) + "\n" for r in course_records(SAMPLE_ROWS, SEED + 1)[0]))
    return Example("course_duration", "DictVectorizer", "regression", path, sample)


def course_joblib(out: Path) -> Path:
    """The same model as make_pipeline(DictVectorizer(), LinearRegression()) in joblib."""
    records, y = course_records(TRAIN_ROWS, SEED)
    path = Path(out) / "course_pipeline.joblib"
    joblib.dump(make_pipeline(DictVectorizer(), LinearRegression()).fit(records, y), path)
    return path


# --- the docs table -------------------------------------------------------

BEGIN, END = "<!-- supported:begin (python -m verify.imports --docs) -->", "<!-- supported:end -->"


def table(measured: dict[str, dict]) -> str:
    """Markdown: every supported class, who converts it, and the agreement measured on its example."""
    lines = ["| step | kind | converted by | rows checked | max rel. error | labels identical | max proba. error |",
             "|---|---|---|---|---|---|---|"]
    for kind, classes in (("transformer", supported.TRANSFORMERS), ("regressor", supported.REGRESSORS),
                          ("classifier", supported.CLASSIFIERS)):
        for cls, (module, by) in classes.items():
            m = measured.get(cls)
            figures = ["in every example below", "", "", ""] if kind == "transformer" else ["—"] * 4
            if m:
                figures = [f"{m['rows']:,} + {m['edge_rows']:,} edge",
                           f"{m['max_true_rel_error']:.1e}" if m.get("max_true_rel_error") is not None else "—",
                           f"{m['label_agreement']:.0%}" if m.get("label_agreement") is not None else "—",
                           f"{m['max_proba_abs_error']:.1e}" if m.get("max_proba_abs_error") is not None else "—"]
            lines.append(f"| `{module}.{cls}` | {kind} | {by} | " + " | ".join(figures) + " |")
    lines.insert(2 + len(supported.TRANSFORMERS), "| `'passthrough'`, `'drop'` | ColumnTransformer column | skl2onnx "
                 "| in every example below | | | |")
    return "\n".join(lines)


def update_docs(docs: Path, measured: dict[str, dict]) -> None:
    text = docs.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    docs.write_text(text[:start] + "\n" + table(measured) + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    from train.importer import run

    parser = argparse.ArgumentParser(prog="python -m verify.imports", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/imports"))
    parser.add_argument("--docs", type=Path, default=None, help="rewrite the supported table in this file")
    args = parser.parse_args(argv)
    measured = {}
    for example in write(args.out / "files"):
        version = run.import_pipeline(example.pipeline, example.sample, example.name, args.out / "models")
        parity = json.loads((version / "model.json").read_text())["parity"]
        measured[example.estimator] = parity
    if args.docs:
        update_docs(args.docs, measured)
    print(json.dumps(measured, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
