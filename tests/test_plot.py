"""Tests for skconv.plot (the optional 'plot' extra).

The drawing tests use the Agg backend and check what is drawn: the axes, the arrays
of the images, the colour limits, the titles, the line data. They are marked
``plot`` and skipped without matplotlib; the import test is not, since
``import skconv.plot`` must work without matplotlib.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

import skconv
from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer
from skconv._nn.layers import Conv, Pool
from skconv.plot import FeatureMapsDisplay, FiltersDisplay, LossCurveDisplay


plot = pytest.mark.plot


@pytest.fixture
def pyplot():
    """matplotlib.pyplot on the Agg backend; closes every figure afterwards."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def _fit(clf, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


@pytest.fixture(scope="module")
def clf2d(digits):
    """LeNet-5 on 8x8 digits: conv blocks (6, 4, 4) and (16, 2, 2). Its blocks are
    explicit: the images' 'auto' ones are 3x3 on short budgets."""
    return _fit(ConvNetClassifier(filters=(6, 16), kernel_size=5, max_iter=2,
                                  random_state=0), *digits)


@pytest.fixture(scope="module")
def clf_early(digits):
    return _fit(ConvNetClassifier(filters=(4,), hidden_layer_sizes=(16,), max_iter=3,
                                  early_stopping=True, validation_fraction=0.2,
                                  random_state=0), *digits)


@pytest.fixture(scope="module")
def clf1d(digits):
    """Digits read as signals of 64 samples, kernels of 5 taps, two epochs (no
    minimum number of updates)."""
    X, y = digits
    return _fit(ConvNetClassifier(image_shape=(64,), filters=(4, 8), kernel_size=5,
                                  hidden_layer_sizes=(16,), max_iter=2, min_updates=0,
                                  random_state=0), X, y)


@pytest.fixture(scope="module")
def rgb():
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(60, 3, 8, 8))
    y = (X[:, 0].mean(axis=(1, 2)) > X[:, 2].mean(axis=(1, 2))).astype(int)
    return X, y


@pytest.fixture(scope="module")
def clf_rgb(rgb):
    return _fit(ConvNetClassifier(filters=(5,), kernel_size=3,
                                  hidden_layer_sizes=(8,), max_iter=2,
                                  random_state=0), *rgb)


@pytest.fixture(scope="module")
def volumes():
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(40, 1, 6, 6, 6))
    y = (X[:, 0, :3].mean(axis=(1, 2, 3)) > X[:, 0, 3:].mean(axis=(1, 2, 3)))
    return X, y.astype(int)


@pytest.fixture(scope="module")
def clf3d(volumes):
    """Kernels (3, 4, 5): the middle depth slice is 1, shape (4, 5)."""
    return _fit(ConvNetClassifier(filters=(3, 4), kernel_size=(3, 4, 5),
                                  hidden_layer_sizes=(8,), max_iter=2,
                                  random_state=0), *volumes)


def _drawn(display):
    """The axes holding an image (or a line), in row-major order."""
    return [a for a in display.ax_.flat if a is not None and a.get_visible()]


def _image(display, r, c):
    return np.asarray(display.images_[r, c].get_array())


def _block_shapes(clf):
    """Output shape of each conv block (the Pool that ends it), from the network."""
    return [layer.output_shape for layer in clf._network.layers
            if isinstance(layer, Pool)]


# -------------------------------------------------------------------------------------
# Import without matplotlib
# -------------------------------------------------------------------------------------
def test_import_does_not_need_matplotlib(tmp_path):
    # In a child process: importing skconv.plot imports no matplotlib, and with
    # matplotlib made unimportable the displays raise an ImportError naming the extra.
    code = textwrap.dedent("""
        import sys
        import skconv, skconv.plot
        from skconv.plot import FiltersDisplay, FeatureMapsDisplay, LossCurveDisplay
        loaded = [m for m in sys.modules if m.split(".")[0] == "matplotlib"]
        assert not loaded, loaded
        sys.modules["matplotlib"] = None  # import matplotlib -> ImportError
        try:
            LossCurveDisplay([1.0, 0.5]).plot()
        except ImportError as exc:
            assert 'pip install "skconv[plot]"' in str(exc), exc
            assert "LossCurveDisplay.plot" in str(exc), exc
        else:
            raise AssertionError("no ImportError without matplotlib")
        print("ok")
    """)
    # The child must import the skconv these tests import (the installed package in
    # CI, the in-place build in a development tree): its folder goes first on the path
    # and the child runs from a folder holding no source tree.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(skconv.__file__)))
    env = dict(os.environ, PYTHONPATH=package_parent + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -------------------------------------------------------------------------------------
# FiltersDisplay
# -------------------------------------------------------------------------------------
@plot
def test_filters_first_layer(pyplot, clf2d):
    disp = FiltersDisplay.from_estimator(clf2d, layer=0)
    w = clf2d.conv_weights_[0]  # (6, 1, 5, 5)
    assert disp.ax_.shape == (1, 6)
    drawn = _drawn(disp)
    assert len(drawn) == 6
    # The figure holds the filters and the colour bar, nothing else.
    assert len(disp.figure_.axes) == 6 + 1
    assert disp.colorbar_ is not None
    for d, ax in enumerate(drawn):
        assert ax.get_title() == f"#{d}"
        assert_array_equal(_image(disp, 0, d), w[d, 0])
    vmax = np.abs(w).max()
    for d in range(6):
        assert_allclose(disp.images_[0, d].get_clim(), (-vmax, vmax), rtol=1e-6)
    assert "conv layer 0" in disp.figure_.get_suptitle()
    assert "5x5" in disp.figure_.get_suptitle()


@plot
def test_filters_grid_mean_and_channel(pyplot, clf2d):
    w = clf2d.conv_weights_[1]  # (16, 6, 5, 5)
    disp = FiltersDisplay.from_estimator(clf2d, layer=1)
    assert disp.ax_.shape == (2, 8)
    assert len(_drawn(disp)) == 16
    for d in range(16):
        r, c = divmod(d, 8)
        assert _image(disp, r, c).shape == (5, 5)
        assert_allclose(_image(disp, r, c), w[d].mean(axis=0), rtol=1e-6)
        lo, hi = disp.images_[r, c].get_clim()
        assert lo == -hi and hi > 0
    assert "mean of 6 input channels" in disp.figure_.get_suptitle()

    disp = FiltersDisplay.from_estimator(clf2d, layer=-1, channel=2, n_cols=5)
    # 16 filters in rows of 5: the last row has one, the empty cells stay None.
    assert disp.ax_.shape == (4, 5)
    assert len(_drawn(disp)) == 16
    assert sum(a is None for a in disp.ax_.flat) == 4
    assert_array_equal(_image(disp, 3, 0), w[15, 2])
    vmax = np.abs(w[:, 2]).max()
    assert_allclose(disp.images_[0, 0].get_clim(), (-vmax, vmax), rtol=1e-6)
    assert "input channel 2 of 6" in disp.figure_.get_suptitle()


@plot
def test_filters_constructor(pyplot):
    w = np.arange(2 * 3 * 2 * 4, dtype=float).reshape(2, 3, 2, 4) - 20
    disp = FiltersDisplay(w, channel=1).plot(colorbar=False, title="mine")
    assert disp.colorbar_ is None
    assert disp.figure_.get_suptitle() == "mine"
    assert_array_equal(disp.kernels_, w[:, 1])
    vmax = np.abs(w[:, 1]).max()  # 19: the largest |weight| of channel 1
    assert disp.images_[0, 0].get_clim() == (-vmax, vmax)
    # All-zero kernels still get a (non-degenerate) symmetric scale.
    disp = FiltersDisplay(np.zeros((2, 1, 3, 3))).plot()
    assert disp.images_[0, 0].get_clim() == (-1.0, 1.0)
    with pytest.raises(ValueError, match="shape"):
        FiltersDisplay(np.zeros((2, 3))).plot()


@plot
def test_filters_bad_layer_and_channel(pyplot, clf2d):
    for layer in (2, -3, 1.0, "0"):
        with pytest.raises(ValueError, match="the network has 2 conv layers"):
            FiltersDisplay.from_estimator(clf2d, layer=layer)
    with pytest.raises(ValueError, match="6 input channels"):
        FiltersDisplay.from_estimator(clf2d, layer=1, channel=6)


@plot
def test_filters_1d(pyplot, clf1d):
    w = clf1d.conv_weights_[0]  # (4, 1, 5)
    assert w.shape == (4, 1, 5)
    disp = FiltersDisplay.from_estimator(clf1d)
    assert len(_drawn(disp)) == 4
    for d in range(4):
        # One-row images.
        assert_array_equal(_image(disp, 0, d), w[d, 0][None, :])
    lo, hi = disp.images_[0, 0].get_clim()
    assert lo == -hi == -np.abs(w).max()


@plot
def test_filters_rgb(pyplot, clf_rgb):
    w = clf_rgb.conv_weights_[0]  # (5, 3, 3, 3)
    disp = FiltersDisplay.from_estimator(clf_rgb)
    assert len(_drawn(disp)) == 5
    assert_allclose(disp.kernels_, w.mean(axis=1))
    disp = FiltersDisplay.from_estimator(clf_rgb, channel=0)
    assert_array_equal(_image(disp, 0, 4), w[4, 0])


@plot
def test_filters_3d_middle_slice(pyplot, clf3d):
    w = clf3d.conv_weights_[0]  # (3, 1, 3, 4, 5)
    assert w.shape == (3, 1, 3, 4, 5)
    disp = FiltersDisplay.from_estimator(clf3d)
    assert len(_drawn(disp)) == 3
    for d in range(3):
        assert_array_equal(_image(disp, 0, d), w[d, 0, 1])
    assert "middle depth slice 1" in disp.figure_.get_suptitle()


# -------------------------------------------------------------------------------------
# FeatureMapsDisplay
# -------------------------------------------------------------------------------------
@plot
def test_feature_maps_digits(pyplot, clf2d, digits):
    X, _ = digits
    x = X[7]
    disp = FeatureMapsDisplay.from_estimator(clf2d, x)
    shapes = _block_shapes(clf2d)
    assert shapes == [(6, 4, 4), (16, 2, 2)]
    # Rows: the input, then each conv block; one panel per channel.
    assert disp.ax_.shape == (3, 16)
    assert [sum(a is not None for a in row) for row in disp.ax_] == [1, 6, 16]
    assert len(disp.figure_.axes) == 1 + 6 + 16
    # The first row is the input sample, exactly.
    assert_array_equal(_image(disp, 0, 0), x.reshape(8, 8))
    for k, (channels, *spatial) in enumerate(shapes, start=1):
        for c in range(channels):
            assert _image(disp, k, c).shape == tuple(spatial)
            assert disp.ax_[k, c].get_title() == f"ch {c}"
    labels = [disp.ax_[k, 0].get_ylabel() for k in range(3)]
    assert labels[0].startswith("input") and "1x8x8" in labels[0]
    assert "block 0" in labels[1] and "6x4x4" in labels[1]
    assert "conv + max pool + relu" in labels[2].replace("\n", " ")


@plot
def test_feature_maps_are_the_network_activations(pyplot, clf2d, digits):
    # The last block's maps, run through the rest of the network, give predict's
    # logits: the maps are what predict computes on the way.
    X, _ = digits
    x = X[3]
    disp = FeatureMapsDisplay.from_estimator(clf2d, x)
    maps = np.stack([_image(disp, 2, c) for c in range(16)])[None]
    layers = clf2d._network.layers
    last_pool = max(i for i, layer in enumerate(layers) if isinstance(layer, Pool))
    out = maps
    for layer in layers[last_pool + 1:]:
        out = layer.forward(out, 1, training=False)
    proba = np.exp(out - out.max()) / np.exp(out - out.max()).sum()
    assert_allclose(proba, clf2d.predict_proba(x[None]), rtol=1e-10, atol=1e-12)
    # And the first block starts from a conv layer applied to the input.
    conv0 = next(layer for layer in layers if isinstance(layer, Conv))
    assert conv0 is layers[0]


@plot
def test_feature_maps_sample_forms_and_errors(pyplot, clf2d, digits):
    X, _ = digits
    x = X[5]
    ref = FeatureMapsDisplay.from_estimator(clf2d, x)
    for form in (x.reshape(1, -1), x.reshape(8, 8), x.reshape(1, 8, 8), list(x)):
        disp = FeatureMapsDisplay.from_estimator(clf2d, form)
        for k, c in [(0, 0), (1, 3), (2, 15)]:
            assert_array_equal(_image(disp, k, c), _image(ref, k, c))
    with pytest.raises(ValueError, match="one sample"):
        FeatureMapsDisplay.from_estimator(clf2d, X[:2])
    with pytest.raises(ValueError, match="64 features"):
        FeatureMapsDisplay.from_estimator(clf2d, x[:60])
    with pytest.raises(ValueError, match="the network has 2 conv layers"):
        FeatureMapsDisplay.from_estimator(clf2d, x, layers=[0, 2])

    disp = FeatureMapsDisplay.from_estimator(clf2d, x, layers=1, max_channels=4)
    assert disp.ax_.shape == (2, 4)
    assert "block 1" in disp.ax_[1, 0].get_ylabel()
    assert "first 4 shown" in disp.ax_[1, 0].get_ylabel()
    assert_array_equal(_image(disp, 1, 3), _image(ref, 2, 3))


@plot
def test_feature_maps_row_colour_scale(pyplot, clf2d, digits):
    X, _ = digits
    disp = FeatureMapsDisplay.from_estimator(clf2d, X[0])
    for k in range(3):
        row = [im for im in disp.images_[k] if im is not None]
        values = np.concatenate([np.ravel(im.get_array()) for im in row])
        for im in row:
            assert im.get_clim() == (values.min(), values.max())


@plot
def test_feature_maps_1d(pyplot, clf1d, digits):
    X, _ = digits
    x = X[1]
    disp = FeatureMapsDisplay.from_estimator(clf1d, x)
    shapes = _block_shapes(clf1d)  # [(4, 32), (8, 16)]
    assert disp.ax_.shape == (3, 8)
    assert_array_equal(_image(disp, 0, 0), x[None, :])
    for k, (channels, length) in enumerate(shapes, start=1):
        assert sum(im is not None for im in disp.images_[k]) == channels
        assert _image(disp, k, 0).shape == (1, length)


@plot
def test_feature_maps_rgb(pyplot, clf_rgb, rgb):
    X, _ = rgb
    disp = FeatureMapsDisplay.from_estimator(clf_rgb, X[4])  # a (3, 8, 8) sample
    assert disp.ax_.shape == (2, 5)
    for c in range(3):
        assert_array_equal(_image(disp, 0, c), X[4, c])
    assert all(_image(disp, 1, c).shape == (4, 4) for c in range(5))
    flat = FeatureMapsDisplay.from_estimator(clf_rgb, X[4].ravel())
    assert_array_equal(_image(flat, 1, 2), _image(disp, 1, 2))


@plot
def test_feature_maps_3d(pyplot, clf3d, volumes):
    X, _ = volumes
    disp = FeatureMapsDisplay.from_estimator(clf3d, X[2])
    shapes = _block_shapes(clf3d)  # [(3, 3, 3, 3), (4, 2, 2, 2)]
    assert disp.ax_.shape == (3, 4)
    assert_array_equal(_image(disp, 0, 0), X[2, 0, 3])  # middle depth slice
    for k, (channels, _, h, w) in enumerate(shapes, start=1):
        for c in range(channels):
            assert _image(disp, k, c).shape == (h, w)
    assert "depth slice" in disp.ax_[0, 0].get_ylabel()


@plot
def test_feature_maps_float32_and_pipeline(pyplot, digits):
    X, y = digits
    X32 = (X * 16).astype(np.float32)
    pipe = _fit(make_pipeline(MinMaxScaler(), ConvNetClassifier(
        filters=(3,), hidden_layer_sizes=(8,), max_iter=1, random_state=0)), X32, y)
    disp = FeatureMapsDisplay.from_estimator(pipe, X32[0])
    assert disp.images_[0, 0].get_array().dtype == np.float32
    expected = pipe[0].transform(X32[:1]).reshape(8, 8)
    assert_array_equal(_image(disp, 0, 0), expected)
    assert _drawn(FiltersDisplay.from_estimator(pipe))[0] is not None
    LossCurveDisplay.from_estimator(pipe)


@plot
@pytest.mark.parametrize("cls", [ConvNetRegressor, ConvNetTransformer])
def test_displays_take_the_regressor_and_the_transformer(pyplot, digits, cls):
    X, y = digits
    est = _fit(cls(filters=(3, 4), hidden_layer_sizes=(8,), max_iter=2,
                   random_state=0), X, y)
    assert _drawn(FiltersDisplay.from_estimator(est))[0] is not None
    disp = FeatureMapsDisplay.from_estimator(est, X[0])
    assert_array_equal(_image(disp, 0, 0), X[0].reshape(8, 8))
    assert LossCurveDisplay.from_estimator(est).estimator_name == cls.__name__


@plot
def test_displays_find_the_transformer_inside_a_pipeline(pyplot, digits):
    # The transformer is not the pipeline's last step: the plots use it, and the steps
    # before it transform the sample.
    X, y = digits
    pipe = _fit(make_pipeline(
        MinMaxScaler(), ConvNetTransformer(filters=(3,), hidden_layer_sizes=(8,),
                                           max_iter=1, random_state=0),
        LogisticRegression(max_iter=50)), X * 16, y)
    disp = FeatureMapsDisplay.from_estimator(pipe, X[0] * 16)
    assert_array_equal(_image(disp, 0, 0), pipe[0].transform(X[:1] * 16).reshape(8, 8))
    assert _drawn(FiltersDisplay.from_estimator(pipe))[0] is not None
    assert LossCurveDisplay.from_estimator(pipe).estimator_name == "ConvNetTransformer"
    with pytest.raises(TypeError, match="skconv estimator"):
        LossCurveDisplay.from_estimator(make_pipeline(MinMaxScaler(),
                                                      LogisticRegression()))


@plot
def test_feature_maps_constructor(pyplot):
    maps = [np.ones((1, 4, 4)), np.arange(3 * 2 * 2.0).reshape(3, 2, 2)]
    disp = FeatureMapsDisplay(maps).plot(title=False)
    assert disp.ax_.shape == (2, 3)
    assert disp.ax_[1, 0].get_ylabel().startswith("stage 1")
    assert disp.figure_.get_suptitle() == ""
    with pytest.raises(ValueError, match="2 stages"):
        FeatureMapsDisplay(maps, stage_names=["a"]).plot()


# -------------------------------------------------------------------------------------
# LossCurveDisplay
# -------------------------------------------------------------------------------------
@plot
def test_loss_curve(pyplot, clf2d):
    disp = LossCurveDisplay.from_estimator(clf2d)
    assert_array_equal(disp.line_.get_ydata(), clf2d.loss_curve_)
    assert_array_equal(disp.line_.get_xdata(), [1, 2])
    # No early stopping: no validation scores, no second axis.
    assert clf2d.validation_scores_ is None
    assert disp.ax2_ is None and disp.score_line_ is None
    assert disp.figure_.axes == [disp.ax_]
    assert disp.ax_.get_xlabel() == "epoch"
    assert disp.ax_.get_ylabel() == "training loss"
    assert [t.get_text() for t in disp.ax_.get_legend().get_texts()] == [
        "training loss"]


@plot
def test_loss_curve_with_validation(pyplot, clf_early):
    disp = LossCurveDisplay.from_estimator(clf_early)
    assert_array_equal(disp.line_.get_ydata(), clf_early.loss_curve_)
    assert len(clf_early.validation_scores_) == 3
    assert disp.ax2_ is not None
    assert len(disp.figure_.axes) == 2
    assert_array_equal(disp.score_line_.get_ydata(), clf_early.validation_scores_)
    assert disp.ax2_.get_ylabel() == "validation score"
    texts = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert texts[:2] == ["training loss", "validation score"]
    assert texts[2].startswith("best score")
    assert "validation score" in disp.ax_.get_title()


@plot
def test_loss_curve_constructor(pyplot):
    # Fewer scores than epochs (early stopping turned on by a warm start): the
    # scores belong to the last epochs.
    disp = LossCurveDisplay([3.0, 2.0, 1.0, 0.5], [0.5, 0.7]).plot(title=False)
    assert_array_equal(disp.score_line_.get_xdata(), [3, 4])
    assert disp.ax_.get_title() == ""
    disp = LossCurveDisplay([3.0, 2.0], []).plot()
    assert disp.ax2_ is None
    with pytest.raises(ValueError, match="3 values for 2 epochs"):
        LossCurveDisplay([3.0, 2.0], [0.1, 0.2, 0.3]).plot()


# -------------------------------------------------------------------------------------
# Shared behaviour: fitted check, where to draw
# -------------------------------------------------------------------------------------
@plot
def test_unfitted_estimator_raises_not_fitted(pyplot, digits):
    clf = ConvNetClassifier()
    with pytest.raises(NotFittedError):
        FiltersDisplay.from_estimator(clf)
    with pytest.raises(NotFittedError):
        FeatureMapsDisplay.from_estimator(clf, digits[0][0])
    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator(clf)
    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator(make_pipeline(MinMaxScaler(), clf))
    with pytest.raises(TypeError, match="skconv estimator"):
        LossCurveDisplay.from_estimator(MinMaxScaler())


@plot
def test_ax_is_reused(pyplot, clf2d, clf_early, digits):
    plt = pyplot
    # LossCurveDisplay: the given Axes.
    fig, ax = plt.subplots()
    disp = LossCurveDisplay.from_estimator(clf_early, ax=ax)
    assert disp.ax_ is ax and disp.figure_ is fig
    assert len(fig.axes) == 2  # ax and its twin

    # Grid displays, an array of axes: used as given, the extra ones hidden.
    fig, axs = plt.subplots(2, 4)
    disp = FiltersDisplay.from_estimator(clf2d, layer=0, ax=axs, colorbar=False)
    assert disp.ax_ is axs and disp.figure_ is fig
    assert disp.bounding_ax_ is None
    assert [a.get_visible() for a in axs.flat] == [True] * 6 + [False] * 2
    assert_array_equal(_image(disp, 1, 1), clf2d.conv_weights_[0][5, 0])
    assert len(fig.axes) == 8
    with pytest.raises(ValueError, match="at least 16 axes"):
        FiltersDisplay.from_estimator(clf2d, layer=1, ax=axs)

    fig, axs = plt.subplots(3, 16)
    disp = FeatureMapsDisplay.from_estimator(clf2d, digits[0][0], ax=axs)
    assert disp.ax_ is axs
    assert sum(a.get_visible() for a in axs.flat) == 1 + 6 + 16
    with pytest.raises(ValueError, match="3 x 16"):
        FeatureMapsDisplay.from_estimator(clf2d, digits[0][0], ax=axs[:, :8])

    # A single Axes of a grid: hidden and split into the grid.
    fig, (left, right) = plt.subplots(1, 2)
    disp = FiltersDisplay.from_estimator(clf2d, layer=1, ax=left)
    assert disp.bounding_ax_ is left and not left.axison
    assert disp.figure_ is fig
    assert all(a.figure is fig for a in _drawn(disp))
    assert len(_drawn(disp)) == 16
    assert "conv layer 1" in left.get_title()


@plot
def test_draw_into_subfigures(pyplot, clf_early, digits):
    # What python -m skconv --plot does: three displays in one figure.
    from matplotlib.figure import Figure

    fig = Figure(layout="constrained")
    top, middle, bottom = fig.subfigures(3, 1)
    filters = FiltersDisplay.from_estimator(clf_early, layer=0, fig=top)
    maps = FeatureMapsDisplay.from_estimator(clf_early, digits[0][0], fig=middle)
    loss = LossCurveDisplay.from_estimator(clf_early, fig=bottom)
    assert filters.figure_ is top and maps.figure_ is middle
    assert loss.figure_ is bottom
    assert len(top.axes) == 4 + 1  # filters and colour bar
    assert len(middle.axes) == 1 + 4
    assert len(bottom.axes) == 2
    assert len(fig.axes) == 5 + 5 + 2
    fig.canvas.draw()  # lays out without error

    with pytest.raises(ValueError, match="not both"):
        LossCurveDisplay.from_estimator(clf_early, ax=fig.axes[0], fig=top)
    with pytest.raises(ValueError, match="not both"):
        FiltersDisplay.from_estimator(clf_early, ax=fig.axes[0], fig=top)
