"""scikit-learn's estimator checks on the three estimators with default parameters.

No expected failures and no tags that lower the bar (no ``poor_score``, no
``non_deterministic``): every check scikit-learn yields for a classifier (multilabel
included), a multi-output regressor and a transformer must pass.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer


@parametrize_with_checks([ConvNetClassifier(), ConvNetRegressor(), ConvNetTransformer()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
