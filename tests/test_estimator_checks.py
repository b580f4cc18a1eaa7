"""scikit-learn's estimator checks on ConvNetClassifier with default parameters.

No expected failures and no tags that lower the bar (no ``poor_score``, no
``non_deterministic``): every check scikit-learn yields for a classifier must pass.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skconv import ConvNetClassifier


@parametrize_with_checks([ConvNetClassifier()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
