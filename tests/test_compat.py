"""Models pickled before the package was laid out in layers still load (skconv._compat).

``data/legacy_models_0.1.0.dev0.pkl`` holds three fitted ``ConvNetClassifier`` models
(2-D with the fused conv + pool block, 1-D with average pooling and SGD, 3-D with early
stopping), pickled by the flat layout of 0.1.0.dev0 (``skconv._classifier``,
``skconv._network``...), with the inputs they were asked about and the probabilities
they gave then.
"""

import pickle
import warnings
from pathlib import Path

import pytest
import numpy as np
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from skconv import ConvNetClassifier

LEGACY = Path(__file__).parent / "data" / "legacy_models_0.1.0.dev0.pkl"


@pytest.fixture(scope="module")
def legacy():
    with open(LEGACY, "rb") as f:
        return pickle.load(f)


def test_legacy_models_predict_as_when_they_were_pickled(legacy):
    # Bitwise but for the dense layers' summation order, which changed after the
    # pickles were made (their forward sums each row in a fixed order now, instead of
    # BLAS's): float32 probabilities then move by a few units in the last place of
    # their largest values, and no more.
    assert set(legacy) == {"2d", "1d_avg_sgd", "3d_es"}
    for name, case in legacy.items():
        model = case["model"]
        assert isinstance(model, ConvNetClassifier), name
        proba = model.predict_proba(case["X"])
        assert_allclose(proba, case["proba"], rtol=0,
                        atol=8 * np.finfo(np.float32).eps, err_msg=name)
        assert_array_equal(proba.argmax(axis=1), case["proba"].argmax(axis=1))


def test_legacy_models_keep_training_like_a_new_model(legacy):
    # Continuing a legacy model equals continuing the same model pickled anew.
    for name in ("2d", "1d_avg_sgd"):
        case = legacy[name]
        old = case["model"]
        new = pickle.loads(pickle.dumps(old))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            y = old.predict(case["X"])
            old.partial_fit(case["X"], y)
            new.partial_fit(case["X"], y)
        assert_array_equal(old.predict_proba(case["X"]), new.predict_proba(case["X"]))
        for a, b in zip(old.coefs_ + old.conv_weights_, new.coefs_ + new.conv_weights_):
            assert_array_equal(a, b)


def test_legacy_layers_have_their_settings_under_the_new_names(legacy):
    network = legacy["2d"]["model"]._network
    conv, pool = network.layers[0], network.layers[1]
    assert conv.kernel_shape == (3, 3) and "_kernel" not in vars(conv)
    assert pool.effective_stride == (2, 2) and "_stride" not in vars(pool)
    # The plan is made again from the layers: the fused block comes back.
    assert len(network.steps[0].layers) == 3


def test_legacy_models_get_the_later_parameters_switched_off(legacy):
    # Parameters added after the pickles were made read as the defaults that
    # reproduce them, so that get_params, clone and further training work.
    for name, case in legacy.items():
        params = case["model"].get_params()
        assert {key: params[key] for key in ("batch_norm", "dropout", "spatial_dropout",
                                              "head", "learning_rate", "min_updates",
                                              "compute_dtype")} \
            == dict(batch_norm=False, dropout=0.0, spatial_dropout=0.0, head="flatten",
                    learning_rate="constant", min_updates=0,
                    compute_dtype="auto"), name
        assert clone(case["model"]).get_params() == params
