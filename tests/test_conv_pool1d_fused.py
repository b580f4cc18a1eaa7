"""Tests of the fused 1-D convolution + pooling (+ relu) of signals
(``skconv._ops.blocks.ConvPool1dBlock`` and the ``_conv_pool`` op on 1-D maps).

The fused path must equal the unfused one bit for bit, for any convolution stride,
pooling window and stride (overlapping windows and gaps included): max and min,
``conv`` then ``pool_with_indices`` (then ``relu``) forward, ``relu_backward``,
``pool_backward_indices`` then ``conv_backward`` backward; average, ``conv``, ``relu``
then ``pool`` forward, ``pool_backward``, ``relu_backward`` then ``conv_backward``. Covered: random geometries and both
dtypes against the unfused ops and against the slow twins (integer data, so exact and
full of ties), central differences in float64, NaN and infinities, thread counts,
the prepared training step, which specs get the block, and whole networks.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skconv import ops
from skconv._nn.lenet import build_lenet5
from skconv._ops import blocks
from skconv._ops.blocks import ConvSpec, PoolSpec, prepare_conv_block

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from . import _reference_conv as ref_conv
    from . import _reference_pool as ref_pool
    from ._bitwise import (assert_bitwise_equal, assert_network_is_the_layer_by_layer_network,
                           assert_same_fused_results)
    from ._finite_differences import central_differences
except ImportError:
    import _reference_conv as ref_conv
    import _reference_pool as ref_pool
    from _bitwise import (assert_bitwise_equal, assert_network_is_the_layer_by_layer_network,
                          assert_same_fused_results)
    from _finite_differences import central_differences

DTYPES = [np.float32, np.float64]


def unfused(x, w, b, grad_out, *, pool_size, pool_stride, mode, relu, n_jobs=1, **kw):
    """Reference: the separate ops, as the network runs them without fusion (relu
    after a max or min pooling, before an average one). Returns the output, the
    flat indices of a max or min pooling (None for avg) and the gradients."""
    y = ops.conv(x, w, b, n_jobs=n_jobs, **kw)
    pool = dict(stride=pool_stride, n_jobs=n_jobs)
    with np.errstate(invalid="ignore"):
        if mode == "avg":
            r = np.maximum(y, 0) if relu else y
            out, indices = ops.pool(r, pool_size, mode="avg", **pool), None
            grad_y = ops.pool_backward(grad_out, r, pool_size, mode="avg", **pool)
            if relu:
                grad_y = grad_y * (r > 0)
        else:
            out, indices = ops.pool_with_indices(y, pool_size, mode=mode, **pool)
            grad_pooled = grad_out
            if relu:
                out = np.maximum(out, 0)
                grad_pooled = grad_out * (out > 0)
            grad_y = ops.pool_backward_indices(grad_pooled, indices, y.shape,
                                               n_jobs=n_jobs)
    return out, indices, ops.conv_backward(grad_y, x, w, n_jobs=n_jobs, **kw)


def fused(x, w, b, grad_out, *, pool_size, pool_stride, mode, relu, n_jobs=1, **kw):
    pool = dict(pool_size=pool_size, pool_stride=pool_stride, mode=mode)
    out, codes = blocks._conv_pool(x, w, b, relu=relu, n_jobs=n_jobs, **pool, **kw)
    grads = blocks._conv_pool_backward(
        grad_out, codes, x, w, n_jobs=n_jobs, relu=relu,
        relu_output=out if relu and mode != "avg" else None, **pool, **kw)
    return out, codes, grads


def pooled_shape(x, w, pool_size, pool_stride, **kw):
    conv_out = ops.conv_output_shape(x.shape[2:], w.shape[2:], **kw)[0]
    return x.shape[:1] + w.shape[:1] + ((conv_out - pool_size) // (pool_stride or
                                                                   pool_size) + 1,)


def check_fused_equals_unfused(x, w, b, seed=0, **kw):
    pool_stride = kw["pool_stride"] or kw["pool_size"]
    conv_kw = {k: kw[k] for k in ("stride", "padding", "dilation") if k in kw}
    shape = pooled_shape(x, w, kw["pool_size"], pool_stride, **conv_kw)
    grad = np.random.default_rng(seed).standard_normal(shape).astype(x.dtype)
    ref_out, indices, ref_grads = unfused(x, w, b, grad, **kw)
    got_out, codes, got_grads = fused(x, w, b, grad, **kw)
    assert_bitwise_equal(got_out, ref_out, "pooled output")
    assert codes.dtype == np.uint8
    if indices is not None:
        # A code is the winning cell's place in its window; decoded, it is the flat
        # index that pool_with_indices returns.
        assert codes.max(initial=0) < kw["pool_size"]
        np.testing.assert_array_equal(np.arange(shape[2]) * pool_stride + codes, indices)
    for name, got, exp in zip(("grad_x", "grad_w", "grad_b"), got_grads, ref_grads):
        assert_bitwise_equal(got, exp, name)


def random_problem(rng, n, c, d, width, kernel, dtype, bias=True, integer=False):
    x = rng.standard_normal((n, c, width))
    w = rng.standard_normal((d, c, kernel))
    b = rng.standard_normal(d) if bias else None
    if integer:  # exact sums, many ties in the windows
        x, w = np.round(2 * x), np.round(2 * w)
        b = None if b is None else np.round(b)
    return x.astype(dtype), w.astype(dtype), None if b is None else b.astype(dtype)


@st.composite
def fused_configs(draw):
    kernel = draw(st.integers(1, 9))
    dilation = draw(st.sampled_from([1, 1, 2, 3]))
    stride = draw(st.sampled_from([1, 1, 2, 3]))
    padding = draw(st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 5)))
    mode = draw(st.sampled_from(["max", "min", "avg"]))
    window = draw(st.integers(1, 8 if mode == "avg" else 6))
    width = draw(st.integers(1, 300))
    while True:  # at least one window
        pads = ref_conv.resolve_padding(padding, (width,), (kernel,), (stride,),
                                        (dilation,))[0]
        span = width + sum(pads) - dilation * (kernel - 1)
        if span >= 1 and (span - 1) // stride + 1 >= window:
            break
        width += 1
    return dict(
        n=draw(st.integers(1, 5)), c=draw(st.integers(1, 13)),
        d=draw(st.integers(1, 34)),  # across the narrow / wide weight-gradient kernels
        width=width, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
        pool_size=window, pool_stride=draw(st.sampled_from([None, 1, 2, 3, 4, 7])),
        bias=draw(st.booleans()), integer=draw(st.booleans()),
        mode=mode, relu=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)), n_jobs=draw(st.sampled_from([1, 2, 3])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=fused_configs())
def test_property_fused_equals_unfused(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x, w, b = random_problem(rng, cfg["n"], cfg["c"], cfg["d"], cfg["width"],
                             cfg["kernel"], cfg["dtype"], cfg["bias"], cfg["integer"])
    conv_kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    assert blocks._conv_pool_supported(x.shape[1:], w.shape[2:],
                                       pool_size=cfg["pool_size"],
                                       pool_stride=cfg["pool_stride"], mode=cfg["mode"],
                                       **conv_kw)
    check_fused_equals_unfused(
        x, w, b, cfg["seed"], pool_size=cfg["pool_size"], pool_stride=cfg["pool_stride"],
        mode=cfg["mode"], relu=cfg["relu"], n_jobs=cfg["n_jobs"], **conv_kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode,relu", [("max", True), ("min", False), ("max", False),
                                       ("avg", True), ("avg", False)])
@pytest.mark.parametrize(
    "n,c,width,d,kernel,window,stride",
    [
        (5, 1, 1000, 6, 5, 2, None),  # signal-1000, block 1
        (5, 6, 500, 16, 5, 2, None),  # signal-1000, block 2
        (3, 1, 1024, 6, 9, 4, None),  # signal-1024-k9-w4
        (3, 12, 1000, 6, 5, 2, None),  # ecg-12x1000
        (2, 12, 500, 32, 7, 2, None),  # ecg-12x500-k7-32x32
        (2, 16, 625, 32, 9, 4, None),  # ecg-12x2500-k9-w4, block 2 (625 = 4*156 + 1)
        (2, 3, 300, 5, 3, 3, 2),  # overlapping windows
        (2, 3, 300, 5, 3, 2, 5),  # gaps between windows
        (2, 2, 7, 3, 3, 7, None),  # one window, the whole output
    ],
)
def test_workload_and_edge_geometries(dtype, mode, relu, n, c, width, d, kernel, window,
                                      stride):
    if mode == "avg" and window > 8:
        pytest.skip("an average's codes hold 8 cells")
    rng = np.random.default_rng(4)
    x, w, b = random_problem(rng, n, c, d, width, kernel, dtype)
    check_fused_equals_unfused(x, w, b, pool_size=window, pool_stride=stride, mode=mode,
                               relu=relu, padding="same")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode,relu", [("avg", True), ("max", True), ("min", False)])
@pytest.mark.parametrize(
    "n,c,width,d,kernel,stride,window",
    [
        (5, 1, 2000, 6, 7, 2, 3),  # signal-2000-k7-s2-avg3, block 1
        (5, 6, 333, 16, 7, 2, 3),  # block 2
        (3, 12, 500, 32, 5, 3, 2),
        (2, 2, 61, 3, 4, 5, 1),
    ],
)
def test_strided_convolutions(dtype, mode, relu, n, c, width, d, kernel, stride,
                              window):
    rng = np.random.default_rng(14)
    x, w, b = random_problem(rng, n, c, d, width, kernel, dtype)
    check_fused_equals_unfused(x, w, b, pool_size=window, pool_stride=None, mode=mode,
                               relu=relu, stride=stride, padding="same")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(12))
def test_against_the_slow_twins(dtype, seed):
    # Integer data: every sum is exact in both dtypes, so the twins' float64 results
    # must be met exactly, ties (the first extreme wins) included.
    rng = np.random.default_rng(100 + seed)
    kernel, dilation = int(rng.integers(1, 8)), int(rng.choice([1, 2]))
    padding = ["valid", "same", int(rng.integers(0, 4))][seed % 3]
    window, stride = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    width = int(rng.integers(60, 120))
    mode, relu = ["max", "min", "avg"][seed % 3], bool(seed % 4 < 2)
    conv_kw = dict(stride=[1, 2][seed % 2], padding=padding, dilation=dilation)
    x, w, b = random_problem(rng, 3, int(rng.integers(1, 5)), int(rng.integers(1, 20)),
                             width, kernel, dtype, integer=True)
    if mode == "avg":  # window sums of integers over 1, 2 or 4 cells: exact too
        window = stride = [1, 2, 4][seed % 3]
    y_ref = ref_conv.conv_ref(x, w, b, **conv_kw)
    r_ref = np.maximum(y_ref, 0) if relu and mode == "avg" else y_ref
    pooled_ref = ref_pool.pool(r_ref, window, stride, mode=mode)
    if relu and mode != "avg":
        pooled_ref = np.maximum(pooled_ref, 0)
    out, codes = blocks._conv_pool(x, w, b, pool_size=window, pool_stride=stride,
                                   mode=mode, relu=relu, **conv_kw)
    np.testing.assert_array_equal(out, pooled_ref.astype(dtype))
    grad = np.round(rng.standard_normal(out.shape) * 3).astype(dtype) * window
    if mode == "avg":
        grad_y = ref_pool.pool_backward(grad, r_ref, window, stride, mode=mode)
        if relu:
            grad_y = grad_y * (r_ref > 0)
    else:
        grad_pooled = grad * (pooled_ref > 0) if relu else grad
        grad_y = ref_pool.pool_backward(grad_pooled, y_ref, window, stride, mode=mode)
    expected = ref_conv.conv_backward_ref(grad_y, x, w, **conv_kw)
    got = blocks._conv_pool_backward(
        grad, codes, x, w, pool_size=window, pool_stride=stride, mode=mode, relu=relu,
        relu_output=out if relu and mode != "avg" else None, **conv_kw)
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, expected):
        np.testing.assert_array_equal(g, e.astype(dtype), err_msg=name)


@pytest.mark.parametrize("mode,window,stride,relu,conv_stride", [
    ("max", 2, 2, True, 1), ("max", 3, 2, False, 1), ("min", 4, 4, True, 1),
    ("max", 2, 3, False, 1), ("max", 3, 3, True, 2), ("avg", 3, 3, True, 2),
    ("avg", 4, 2, True, 1), ("avg", 2, 3, False, 3)])
def test_gradients_by_central_differences(mode, window, stride, relu, conv_stride):
    # float64, random data: no ties, and no window's extreme (or relu's kink) is
    # within a step of another cell, so the loss is smooth around the point.
    rng = np.random.default_rng(21)
    x, w, b = random_problem(rng, 2, 3, 4, 61, 3, np.float64)
    kw = dict(stride=conv_stride, padding="same", dilation=2, pool_size=window,
              pool_stride=stride, mode=mode)
    out, codes = blocks._conv_pool(x, w, b, relu=relu, **kw)
    grad = rng.standard_normal(out.shape)

    def loss():
        return float((blocks._conv_pool(x, w, b, relu=relu, **kw)[0] * grad).sum())

    got = blocks._conv_pool_backward(
        grad, codes, x, w, relu=relu, relu_output=out if relu and mode != "avg" else None,
        **kw)
    for name, array, analytic in zip(("x", "w", "b"), (x, w, b), got):
        numeric = central_differences(loss, array, 1e-6)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["max", "min", "avg"])
@pytest.mark.parametrize("relu", [False, True])
def test_nan_and_infinities(dtype, mode, relu):
    # NaN wins its window in the pooling (the first NaN), infinities are ordinary
    # extremes; relu keeps NaN; the backward has non-finite inputs, so it takes the
    # general path.
    rng = np.random.default_rng(5)
    x, w, b = random_problem(rng, 3, 2, 4, 40, 3, dtype)
    x[0, 0, 7] = np.nan
    x[1, 1, 20] = np.inf
    x[2, 0, 0] = -np.inf
    with np.errstate(invalid="ignore"):
        check_fused_equals_unfused(x, w, b, pool_size=3, pool_stride=2, mode=mode,
                                   relu=relu, padding="same")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "grad", "w"])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_one_non_finite_value_takes_the_general_path(dtype, where, n_jobs):
    rng = np.random.default_rng(11)
    x, w, b = random_problem(rng, 19, 3, 5, 50, 3, dtype)
    kw = dict(padding="same", pool_size=4, pool_stride=4)
    grad = rng.standard_normal((19, 5, 12)).astype(dtype)
    if where == "x":
        x[9, 2, 49] = np.inf
    elif where == "grad":
        grad[18, 4, 11] = np.nan
    else:
        w[4, 1, 2] = -np.inf
    with np.errstate(invalid="ignore"):
        _, codes = blocks._conv_pool(x, w, b, n_jobs=n_jobs, **kw)
        y = ops.conv(x, w, b, padding="same")
        _, indices = ops.pool_with_indices(y, 4)
        expected = ops.conv_backward(ops.pool_backward_indices(grad, indices, y.shape),
                                     x, w, padding="same")
        got = blocks._conv_pool_backward(grad, codes, x, w, n_jobs=n_jobs, **kw)
    assert not all(np.isfinite(g).all() for g in got)
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, expected):
        assert_bitwise_equal(g, e, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 19, 64])
@pytest.mark.parametrize("c,d,window,stride,mode,conv_stride", [
    (1, 6, 2, 2, "max", 1), (12, 16, 4, 4, "max", 1), (6, 16, 3, 2, "min", 1),
    (1, 6, 3, 3, "avg", 2), (6, 16, 2, 2, "max", 2)])
def test_thread_count_gives_bitwise_equal_results(dtype, n, c, d, window, stride, mode,
                                                  conv_stride, monkeypatch):
    # n_jobs is capped at the usable cores: pretend to have more, so that 3 threads
    # (an odd split of the batch) run on a two-core machine too.
    monkeypatch.setattr("skconv._ops.threads._usable_cpu_count", lambda: 4)
    rng = np.random.default_rng(7)
    x, w, b = random_problem(rng, n, c, d, 500, 5, dtype)
    grad = rng.standard_normal(pooled_shape(x, w, window, stride, stride=conv_stride,
                                            padding="same")).astype(dtype)
    kw = dict(pool_size=window, pool_stride=stride, mode=mode, relu=True,
              stride=conv_stride, padding="same")
    results = [fused(x, w, b, grad, n_jobs=n_jobs, **kw) for n_jobs in (1, 2, 3)]
    assert_same_fused_results(results)


def test_inference_skips_codes_and_first_layer_skips_grad_x():
    rng = np.random.default_rng(8)
    x, w, _ = random_problem(rng, 3, 1, 2, 30, 3, np.float32)
    kw = dict(padding="same", pool_size=3)
    pooled, codes = blocks._conv_pool(x, w, None, want_codes=False, **kw)
    assert codes is None
    reference, codes = blocks._conv_pool(x, w, None, **kw)
    assert_bitwise_equal(pooled, reference, "pooled output")
    grad_x, grad_w, grad_b = blocks._conv_pool_backward(np.ones_like(pooled), codes, x, w,
                                                        compute_grad_x=False, **kw)
    assert grad_x is None
    _, ref_w, ref_b = blocks._conv_pool_backward(np.ones_like(pooled), codes, x, w, **kw)
    assert_bitwise_equal(grad_w, ref_w, "grad_w")
    assert_bitwise_equal(grad_b, ref_b, "grad_b")


def test_empty_batch_and_bad_arguments():
    x, w = np.zeros((0, 2, 12)), np.ones((3, 2, 3))
    pooled, codes = blocks._conv_pool(x, w, np.ones(3), pool_size=3)
    assert pooled.shape == codes.shape == (0, 3, 3)
    grad_x, grad_w, grad_b = blocks._conv_pool_backward(pooled, codes, x, w, pool_size=3)
    assert grad_x.shape == x.shape
    np.testing.assert_array_equal(grad_w, 0)
    np.testing.assert_array_equal(grad_b, 0)
    x = np.ones((2, 2, 12))
    pooled, codes = blocks._conv_pool(x, w, pool_size=3)
    with pytest.raises(ValueError, match=r"codes must have shape \(2, 3, 3\)"):
        blocks._conv_pool_backward(pooled, codes[:, :, :2], x, w, pool_size=3)
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 3, 5\)"):
        blocks._conv_pool_backward(pooled, codes, x, w, pool_size=2)
    with pytest.raises(ValueError, match="fused convolution and pooling needs"):
        blocks._conv_pool(x, w, pool_size=11)
    # A code past the window's last cell (not the forward's) is refused by the
    # general path's index check rather than written out of bounds.
    bad = np.full_like(codes, 200)
    with np.errstate(invalid="ignore"):
        with pytest.raises(ValueError, match="indices must lie in"):
            blocks._conv_pool_backward(np.full(pooled.shape, np.nan), bad, x, w,
                                       pool_size=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("mode,conv_stride", [("max", 1), ("avg", 2), ("min", 2)])
def test_prepared_step_is_bitwise_the_op(dtype, relu, mode, conv_stride):
    rng = np.random.default_rng(12)
    w = rng.standard_normal((4, 3, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    kw = dict(stride=conv_stride, padding=2, pool_size=3, pool_stride=3, relu=relu,
              mode=mode)
    step = blocks._PreparedBatch((5, 3, 61), w.shape, dtype, **kw)
    grad_w, grad_b = np.empty_like(w), np.empty_like(b)
    for _ in range(3):  # the step's arrays are reused: every call must be right
        x = rng.standard_normal((5, 3, 61)).astype(dtype)
        y, codes = step.forward(x, w, b, 2)
        ref_y, ref_codes = blocks._conv_pool(x, w, b, **kw)
        assert_bitwise_equal(y, ref_y, "pooled output")
        np.testing.assert_array_equal(codes, ref_codes)
        grad = rng.standard_normal(y.shape).astype(dtype)
        grad_x = step.backward(grad, x, w, grad_w, grad_b, 2)
        expected = blocks._conv_pool_backward(
            grad, ref_codes, x, w, stride=conv_stride, padding=2, pool_size=3,
            pool_stride=3, mode=mode, relu=relu,
            relu_output=ref_y if relu and mode != "avg" else None)
        for name, g, e in zip(("grad_x", "grad_w", "grad_b"), (grad_x, grad_w, grad_b),
                              expected):
            assert_bitwise_equal(g, e, name)
    with pytest.raises(ValueError, match=r"x must have shape \(5, 3, 61\)"):
        step.forward(np.zeros((6, 3, 61), dtype), w, b, 1)


@pytest.mark.parametrize(
    "input_shape,conv,following,expected",
    [
        ((1, 1000), ConvSpec((5,), 1, "same"), (PoolSpec((2,), (2,)), "relu"),
         blocks.ConvPool1dBlock),
        ((12, 100), ConvSpec((9,), 1, "valid", 2), (PoolSpec((4,), (4,), 0, "min"),),
         blocks.ConvPool1dBlock),
        ((3, 50), ConvSpec((3,), 1, 1), (PoolSpec((3,), (2,)),), blocks.ConvPool1dBlock),
        # 'same' pooling that pads nothing at the start and keeps every window inside
        ((3, 50), ConvSpec((3,), 1, 1), (PoolSpec((2,), (2,), "same"),),
         blocks.ConvPool1dBlock),
        # not this block's:
        ((3, 51), ConvSpec((3,), 1, 1), (PoolSpec((2,), (2,), "same"),), None),  # pads
        ((3, 50), ConvSpec((3,), 1, 1), (PoolSpec((3,), (3,), 1),), None),  # padded
        ((1, 100), ConvSpec((5,), 2, "same"), (PoolSpec((2,), (2,)), "relu"),
         blocks.ConvPool1dBlock),  # strided convolution
        ((1, 100), ConvSpec((7,), 2, "same"), ("relu", PoolSpec((3,), (3,), 0, "avg")),
         blocks.ConvPool1dBlock),  # relu, then average
        ((2, 90), ConvSpec((3,), 1, 0), (PoolSpec((4,), (2,), 0, "avg"),),
         blocks.ConvPool1dBlock),
        ((1, 100), ConvSpec((5,), 1, "same"), (PoolSpec((2,), (2,), 0, "avg"), "relu"),
         None),  # average, then relu: they do not commute
        ((1, 100), ConvSpec((5,), 1, "same"), ("relu", PoolSpec((2,), (2,))),
         None),  # the builder puts relu after max pooling
        ((1, 100), ConvSpec((5,), 1, "same"), ("relu", PoolSpec((9,), (9,), 0, "avg")),
         None),  # an average's codes hold 8 cells
        ((1, 100), ConvSpec((5,), 1, "same"), (PoolSpec((2,), (2,)), "tanh"), None),
        # no pooling: the convolution and relu block's
        ((1, 100), ConvSpec((5,), 1, "same"), ("relu",), blocks.ConvReluBlock),
        ((1, 2, 100), ConvSpec((1, 5), 1, "same"), (PoolSpec((1, 2), (1, 2)),),
         None),  # 2-D maps take the 2x2 block only
    ],
)
def test_which_specs_get_the_block(input_shape, conv, following, expected):
    for dtype in DTYPES:
        block = prepare_conv_block(input_shape, 4, conv, following, dtype)
        assert type(block) is expected if expected else block is None
        if isinstance(block, blocks.ConvPool1dBlock):
            pool = next(step for step in following if isinstance(step, PoolSpec))
            assert block.output_shape == (4,) + blocks._cached_conv_pool_geometry(
                input_shape, conv.kernel_shape, pool.pool_size, pool.stride, conv.stride,
                conv.padding, conv.dilation)[1]
            assert "ConvPool1dBlock" in repr(block)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((1, 200), dict()),
        ((12, 150), dict(kernel_size=7, pool_size=4, pooling="min", padding="valid")),
        ((3, 90), dict(kernel_size=3, pool_size=3, pool_stride=2, dilation=2)),
        ((1, 300), dict(kernel_size=7, stride=2, pooling="avg", pool_size=3)),
        ((4, 120), dict(kernel_size=3, stride=(2, 1), pooling="max", pool_size=2)),
    ],
)
def test_network_with_fused_signal_blocks_is_the_layer_by_layer_network(shape, kwargs,
                                                                       dtype):
    # A few training steps and an inference of a LeNet on signals: the fused plan
    # (conv + pool + relu as one block) against every layer on its own, bit for bit.
    net = build_lenet5(shape, 4, hidden_layer_sizes=(8,), **kwargs)
    assert assert_network_is_the_layer_by_layer_network(net, shape, dtype,
                                                        blocks.ConvPool1dBlock) == 2
