"""scikit-learn's estimator checks on the three estimators, with default parameters and
with the learning options switched on.

No tags that lower the bar (no ``poor_score``, no ``non_deterministic``): every check
scikit-learn yields for a classifier (multilabel included), a multi-output regressor and
a transformer must pass, with no expected failures: with the defaults, with the
options that keep training per-sample (a global-pooling head, the cosine schedule, an
update budget), with dropout and with batch normalisation (after every layer, and
after the conv layers only).

``check_sample_weight_equivalence_on_dense_data`` asks that a weight of 2 train the
model a duplicated sample trains, and a weight of 0 the model without the sample, to
1e-7. Batch normalisation passes it because its statistics are weighted by the
samples' weights (frequency weights, running variance included:
:func:`skconv._ops.norm.batch_norm_count`); dropout and augmentation pass it because
their draws are keyed by the samples' content, so both copies of a sample draw what
the weighted sample draws.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._estimator_helpers import LEARNING_OPTIONS
except ImportError:
    from _estimator_helpers import LEARNING_OPTIONS

#: Batch norm, dropout, a global average pooling head and the cosine schedule. No
#: spatial dropout for the regressor: on check_regressors_train's 10 tabular features
#: read as a signal, dropping whole channels of a global-pooling head leaves it below
#: the check's R^2 of 0.5 (the option suits signals, not tabular columns).
OPTIONS = {k: v for k, v in LEARNING_OPTIONS.items() if k != "spatial_dropout"}
#: The options that leave each sample's training its own. The regressor takes them
#: without its default dropout: with a global-pooling head on check_regressors_train's
#: 10 tabular features, dropout on the dense layers leaves it below the check's R^2 of
#: 0.5 (the default regressor, with dropout and the flatten head, passes).
PER_SAMPLE_OPTIONS = dict(head="avg", learning_rate="cosine", min_updates=150)
#: Dropout and augmentation: draws keyed by content keep a weight of 2 a duplicated
#: sample.
KEYED_OPTIONS = dict(dropout=0.2, spatial_dropout=0.1, augment_shift=0.1,
                     augment_scale=0.1, augment_noise=0.05)
# The checks' data are tabular columns read as a signal, which moving or mirroring
# scrambles: check_regressors_train's R^2 > 0.5 on the training data then fails for
# the regressor, so its dropout is the default instance's, and the mirror goes on the
# transformer, whose checks score nothing.


@parametrize_with_checks(
    [ConvNetClassifier(), ConvNetRegressor(), ConvNetTransformer(),
     ConvNetClassifier(**PER_SAMPLE_OPTIONS),
     ConvNetRegressor(**PER_SAMPLE_OPTIONS, dropout=0.0),
     ConvNetClassifier(**KEYED_OPTIONS), ConvNetTransformer(**KEYED_OPTIONS, augment_flip=True),
     ConvNetClassifier(**LEARNING_OPTIONS), ConvNetRegressor(**OPTIONS),
     ConvNetTransformer(**LEARNING_OPTIONS), ConvNetClassifier(batch_norm="conv")])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
