"""skl2onnx converters the import path swaps in while it converts.

Imported pipelines run in double precision, as sklearn computes them:
float columns are `tensor(double)` inputs and every transformer works in
double up to the estimator. skl2onnx's SimpleImputer emits ai.onnx.ml's
Imputer, which ONNX Runtime implements for float only, so here it is
IsNaN + Where in the input's own type. skl2onnx's OneHotEncoder refuses
infrequent categories: here each column's categories map to sklearn's own
output columns. The tree estimators get this
package's exact converters (trees.py), LightGBM too, and XGBoost
onnxmltools' registered one.

The swap is scoped (`registered()`): `train export` in the same process
keeps skl2onnx's converters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from onnx import TensorProto
from skl2onnx.common import _registration
from skl2onnx.common.data_types import DoubleTensorType, guess_numpy_type, guess_proto_type
from skl2onnx.common.utils import check_input_and_output_numbers
from skl2onnx import update_registered_converter
from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

from . import trees


def convert_simple_imputer(scope, operator, container) -> None:
    """NaN -> the fitted statistic, column by column, in the input's type."""
    imputer = operator.raw_operator
    dtype = guess_numpy_type(operator.inputs[0].type)
    proto = guess_proto_type(operator.inputs[0].type)
    if proto not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        raise RuntimeError(f"SimpleImputer over a {operator.inputs[0].type}: only float columns are imputed")
    fill = scope.get_unique_variable_name("imputer_fill")
    container.add_initializer(fill, proto, [1, len(imputer.statistics_)],
                              np.asarray(imputer.statistics_, dtype=dtype).tolist())
    missing = scope.get_unique_variable_name("imputer_missing")
    container.add_node("IsNaN", operator.inputs[0].full_name, missing, name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Where", [missing, fill, operator.inputs[0].full_name], operator.outputs[0].full_name,
                       name=scope.get_unique_operator_name("Where"))


def convert_one_hot_encoder(scope, operator, container) -> None:
    """sklearn's own mapping of every category to its output columns, as a 0/1 matrix.

    Each input column is one-hot encoded over all of categories_ (an unseen
    value gives a row of zeros), then multiplied by the matrix sklearn's
    transform gives for those categories: infrequent categories land in
    the infrequent column, a dropped one nowhere. An unseen value gets the
    row sklearn gives it (zeros, or the infrequent column with
    handle_unknown="infrequent_if_exist"). 0/1 products and sums are exact.
    """
    encoder = operator.raw_operator
    blocks = []
    columns = [(variable, k) for variable in operator.inputs for k in range(variable.get_second_dimension() or 1)]
    if len(columns) != len(encoder.categories_):
        raise RuntimeError(f"OneHotEncoder fitted on {len(encoder.categories_)} columns receives {len(columns)}")
    for j, (variable, k) in enumerate(columns):
        column = variable.full_name
        if (variable.get_second_dimension() or 1) > 1:
            column = scope.get_unique_variable_name("onehot_column")
            index = scope.get_unique_variable_name("onehot_index")
            container.add_initializer(index, TensorProto.INT64, [1], [k])
            container.add_node("Gather", [variable.full_name, index], column, axis=1,
                               name=scope.get_unique_operator_name("Gather"))
        mapping, unseen = one_hot_mapping(encoder, j)
        categories = encoder.categories_[j]
        attrs = ({"cats_strings": [str(c) for c in categories]} if categories.dtype.kind in "OUS"
                 else {"cats_int64s": [int(c) for c in categories]})
        encoded = scope.get_unique_variable_name("onehot")
        container.add_node("OneHotEncoder", column, encoded, op_domain="ai.onnx.ml", zeros=1,
                           name=scope.get_unique_operator_name("OneHotEncoder"), **attrs)
        flat = scope.get_unique_variable_name("onehot_2d")
        shape = scope.get_unique_variable_name("onehot_shape")
        container.add_initializer(shape, TensorProto.INT64, [2], [-1, len(categories)])
        container.add_node("Reshape", [encoded, shape], flat, name=scope.get_unique_operator_name("Reshape"))
        matrix = scope.get_unique_variable_name("onehot_mapping")
        container.add_initializer(matrix, TensorProto.FLOAT, list(mapping.shape), mapping.ravel().tolist())
        block = scope.get_unique_variable_name("onehot_block")
        container.add_node("MatMul", [flat, matrix], block, name=scope.get_unique_operator_name("MatMul"))
        if unseen.any():  # rows of zeros (unseen values) get sklearn's row for them
            seen = scope.get_unique_variable_name("onehot_seen")
            container.add_node("ReduceSum", [flat, _const(scope, container, np.array([1], dtype=np.int64))], seen,
                               keepdims=1, name=scope.get_unique_operator_name("ReduceSum"))
            missing = scope.get_unique_variable_name("onehot_unseen")
            container.add_node("Sub", [_const(scope, container, np.array([[1.0]], dtype=np.float32)), seen], missing,
                               name=scope.get_unique_operator_name("Sub"))
            extra = scope.get_unique_variable_name("onehot_unseen_row")
            container.add_node("Mul", [missing, _const(scope, container, unseen.reshape(1, -1).astype(np.float32))],
                               extra, name=scope.get_unique_operator_name("Mul"))
            total = scope.get_unique_variable_name("onehot_block_all")
            container.add_node("Add", [block, extra], total, name=scope.get_unique_operator_name("Add"))
            block = total
        blocks.append(block)
    joined = scope.get_unique_variable_name("onehot_all")
    container.add_node("Concat", blocks, joined, axis=1, name=scope.get_unique_operator_name("Concat"))
    to = guess_proto_type(operator.outputs[0].type)
    container.add_node("Cast", joined, operator.outputs[0].full_name, to=to, name=scope.get_unique_operator_name("Cast"))


def one_hot_mapping(encoder, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(categories_[j] x output columns of feature j) as sklearn's transform maps them, and the unseen row."""
    import warnings

    import pandas as pd

    categories = encoder.categories_[j]
    if categories.dtype.kind not in "OUSiu" or any(c is None or (isinstance(c, float) and np.isnan(c))
                                                   for c in categories):
        raise RuntimeError(f"OneHotEncoder column {j}: categories {categories[:5].tolist()} are not strings or integers")
    rows = len(categories) + 1
    probe = [np.repeat(c[:1], rows) for c in encoder.categories_]
    unseen = "\x00unseen" if categories.dtype.kind in "OUS" else int(np.max(categories)) + 1
    probe[j] = np.concatenate([categories, np.array([unseen], dtype=categories.dtype)])
    names = getattr(encoder, "feature_names_in_", None)
    X = (pd.DataFrame({n: p for n, p in zip(names, probe)}) if names is not None
         else np.column_stack([p.astype(object) for p in probe]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if encoder.handle_unknown == "error":
            out = np.vstack([np.asarray(_dense(encoder.transform(X[:-1] if names is None else X.iloc[:-1]))),
                             np.zeros((1, sum(encoder._n_features_outs)))])
        else:
            out = np.asarray(_dense(encoder.transform(X)))
    start = sum(encoder._n_features_outs[:j])
    block = out[:, start:start + encoder._n_features_outs[j]].astype(np.float32)
    return block[:-1], block[-1]


def _dense(matrix):
    return matrix.toarray() if hasattr(matrix, "toarray") else matrix


def _const(scope, container, value: np.ndarray) -> str:
    name = scope.get_unique_variable_name("const")
    proto = TensorProto.INT64 if value.dtype == np.int64 else TensorProto.FLOAT
    container.add_initializer(name, proto, list(value.shape), value.ravel().tolist())
    return name


def _one_hot_shape(operator) -> None:
    width = sum(operator.raw_operator._n_features_outs)
    operator.outputs[0].type = DoubleTensorType([operator.inputs[0].get_first_dimension(), width])


def _imputer_shape(operator) -> None:
    check_input_and_output_numbers(operator, input_count_range=[1, None], output_count_range=1)
    calculate_sklearn_imputer_output_shapes(operator)
    # keep the input's precision (skl2onnx's shape calculator says float for every input)
    if isinstance(operator.inputs[0].type, DoubleTensorType):
        operator.outputs[0].type = DoubleTensorType(operator.outputs[0].type.shape)


@contextlib.contextmanager
def registered() -> Iterator[None]:
    """skl2onnx's registries with this package's converters in them, restored on exit."""
    pools = (_registration._converter_pool, _registration._shape_calculator_pool)
    saved = [dict(pool) for pool in pools]
    from skl2onnx._supported_operators import sklearn_operator_name_map

    saved_names = dict(sklearn_operator_name_map)
    try:
        from sklearn.impute import SimpleImputer

        from sklearn.preprocessing import OneHotEncoder

        update_registered_converter(SimpleImputer, "SklearnSimpleImputer", _imputer_shape,
                                    convert_simple_imputer, overwrite=True)
        update_registered_converter(OneHotEncoder, "SklearnOneHotEncoder", _one_hot_shape,
                                    convert_one_hot_encoder, overwrite=True)
        trees.register()
        _register_boosters()
        yield
    finally:
        for pool, old in zip(pools, saved):
            pool.clear()
            pool.update(old)
        sklearn_operator_name_map.clear()
        sklearn_operator_name_map.update(saved_names)


def _register_boosters() -> None:
    """onnxmltools' XGBoost converters, for the estimators inside a sklearn Pipeline (LightGBM: trees.py)."""
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor
    except ImportError:
        return
    update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", trees.booster_regressor_shape,
                                trees.float32_booster(convert_xgboost), overwrite=True)
    update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", trees.booster_classifier_shape,
                                trees.float32_booster(convert_xgboost), overwrite=True,
                                options={"zipmap": [True, False], "nocl": [True, False]})
