"""skl2onnx converters the import path swaps in while it converts.

Imported pipelines run in double precision, as sklearn computes them:
float columns are `tensor(double)` inputs and every transformer works in
double up to the estimator. skl2onnx's SimpleImputer emits ai.onnx.ml's
Imputer, which ONNX Runtime implements for float only, so here it is
IsNaN + Where in the input's own type. The tree estimators get this
package's exact converters (trees.py), and XGBoost/LightGBM onnxmltools'
registered ones.

The swap is scoped (`registered()`): `train export` in the same process
keeps skl2onnx's converters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
from onnx import TensorProto
from skl2onnx.common import _registration
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, guess_numpy_type, guess_proto_type
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

        update_registered_converter(SimpleImputer, "SklearnSimpleImputer", _imputer_shape,
                                    convert_simple_imputer, overwrite=True)
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
    """onnxmltools' XGBoost and LightGBM converters, for the estimators inside a sklearn Pipeline."""
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor
    except ImportError:
        pass
    else:
        update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", trees.booster_regressor_shape,
                                    trees.float32_booster(convert_xgboost), overwrite=True)
        update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", trees.booster_classifier_shape,
                                    trees.float32_booster(convert_xgboost), overwrite=True,
                                    options={"zipmap": [True, False], "nocl": [True, False]})
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    except ImportError:
        pass
    else:
        update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor", trees.booster_regressor_shape,
                                    trees.float32_booster(convert_lightgbm), overwrite=True)
        update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier", trees.booster_classifier_shape,
                                    trees.float32_booster(convert_lightgbm), overwrite=True,
                                    options={"zipmap": [True, False], "nocl": [True, False]})


__all__ = ["registered", "FloatTensorType"]
