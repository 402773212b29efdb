"""What the import path converts: every step class, by where it may stand.

One table, read by the refusal messages, the converters and the generated
docs table (docs/import.md): a step is converted only if its class is here.
Each entry names the converter that handles it (skl2onnx's own, one of this
package's exact ones, or onnxmltools' registered one).
"""

from __future__ import annotations

# class name -> (module it comes from, who converts it)
TRANSFORMERS: dict[str, tuple[str, str]] = {
    "DictVectorizer": ("sklearn.feature_extraction", "train.importer.dictvec (first step: one input per key)"),
    "ColumnTransformer": ("sklearn.compose", "skl2onnx"),
    "Pipeline": ("sklearn.pipeline", "skl2onnx"),
    "OneHotEncoder": ("sklearn.preprocessing", "train.importer.converters (string and integer categories, "
                      "unseen, infrequent)"),
    "StandardScaler": ("sklearn.preprocessing", "skl2onnx"),
    "MinMaxScaler": ("sklearn.preprocessing", "skl2onnx"),
    "SimpleImputer": ("sklearn.impute", "train.importer.converters (double precision; nullable inputs)"),
}

REGRESSORS: dict[str, tuple[str, str]] = {
    "LinearRegression": ("sklearn.linear_model", "skl2onnx"),
    "Ridge": ("sklearn.linear_model", "skl2onnx"),
    "Lasso": ("sklearn.linear_model", "skl2onnx"),
    "ElasticNet": ("sklearn.linear_model", "skl2onnx"),
    "SGDRegressor": ("sklearn.linear_model", "skl2onnx"),
    "DecisionTreeRegressor": ("sklearn.tree", "train.importer.trees (exact splits)"),
    "RandomForestRegressor": ("sklearn.ensemble", "train.importer.trees (exact splits)"),
    "ExtraTreesRegressor": ("sklearn.ensemble", "train.importer.trees (exact splits)"),
    "GradientBoostingRegressor": ("sklearn.ensemble", "train.importer.trees (exact splits)"),
    "HistGradientBoostingRegressor": ("sklearn.ensemble", "train.importer.trees (exact splits)"),
    "XGBRegressor": ("xgboost", "onnxmltools"),
    "LGBMRegressor": ("lightgbm", "train.importer.trees (exact splits)"),
}

CLASSIFIERS: dict[str, tuple[str, str]] = {
    "LogisticRegression": ("sklearn.linear_model", "skl2onnx"),
    "DecisionTreeClassifier": ("sklearn.tree", "train.importer.trees (exact splits)"),
    "RandomForestClassifier": ("sklearn.ensemble", "train.importer.trees (exact splits)"),
    "ExtraTreesClassifier": ("sklearn.ensemble", "train.importer.trees (exact splits)"),
    "GradientBoostingClassifier": ("sklearn.ensemble", "train.importer.trees (exact splits)"),
    "HistGradientBoostingClassifier": ("sklearn.ensemble", "train.importer.trees (exact splits)"),
    "XGBClassifier": ("xgboost", "onnxmltools"),
    "LGBMClassifier": ("lightgbm", "train.importer.trees (exact splits)"),
}

ESTIMATORS = {**REGRESSORS, **CLASSIFIERS}
# Strings a ColumnTransformer takes in place of a transformer.
SPECIAL = ("passthrough", "drop")


def summary() -> str:
    """One line listing what is supported, for refusal messages."""
    return (f"supported transformers: {', '.join(TRANSFORMERS)}, 'passthrough', 'drop'; "
            f"estimators: {', '.join(ESTIMATORS)}")
