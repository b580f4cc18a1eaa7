"""Tests of the fused convolution + 2x2 pooling (+ relu) of images
(``skconv._ops.blocks``); the signals' block is in test_conv_pool1d_fused.py.

The fused path must equal the unfused one bit for bit: ``conv`` then
``pool_with_indices`` (then ``relu``) forward, ``relu_backward``,
``pool_backward_indices`` then ``conv_backward`` backward (tested against slow twins
in test_conv.py, test_pool.py and test_activations.py). Covered:
random geometries and both dtypes, ties (integer data), NaN and infinities, thread
counts, empty batches, the codes' meaning, the numpy fallback of the backward and
argument checking.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from skconv import ops
from skconv._ops import blocks
from skconv._nn.activations import relu as relu_forward
from skconv._nn.activations import relu_backward

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._bitwise import assert_bitwise_equal, assert_same_fused_results
except ImportError:
    from _bitwise import assert_bitwise_equal, assert_same_fused_results

DTYPES = [np.float32, np.float64]


def unfused(x, w, b, grad_out, mode, n_jobs=1, relu=False, **kw):
    """Reference: the separate ops, as the network runs them without fusion (relu
    after a max or min pooling, before an average one). Returns the output, the flat
    indices of a max or min pooling (relu's output before the pooling for avg) and
    the gradients."""
    y = ops.conv(x, w, b, n_jobs=n_jobs, **kw)
    if mode == "avg":
        r = relu_forward(y) if relu else y
        out = ops.pool(r, 2, mode="avg", n_jobs=n_jobs)
        grad_y = ops.pool_backward(grad_out, r, 2, mode="avg", n_jobs=n_jobs)
        if relu:
            grad_y = relu_backward(r, grad_y)
        return out, r, ops.conv_backward(grad_y, x, w, n_jobs=n_jobs, **kw)
    out, indices = ops.pool_with_indices(y, 2, mode=mode, n_jobs=n_jobs)
    grad_pooled = grad_out
    if relu:
        out = relu_forward(out)
        grad_pooled = relu_backward(out, grad_out)
    grad_y = ops.pool_backward_indices(grad_pooled, indices, y.shape, n_jobs=n_jobs)
    grads = ops.conv_backward(grad_y, x, w, n_jobs=n_jobs, **kw)
    return out, indices, grads


def fused(x, w, b, grad_out, mode, n_jobs=1, relu=False, **kw):
    out, codes = blocks._conv_pool(x, w, b, mode=mode, relu=relu, n_jobs=n_jobs, **kw)
    grads = blocks._conv_pool_backward(
        grad_out, codes, x, w, mode=mode, n_jobs=n_jobs, relu=relu,
        relu_output=out if relu and mode != "avg" else None, **kw)
    return out, codes, grads


def check_fused_equals_unfused(x, w, b, mode, seed=0, n_jobs=1, relu=False, **kw):
    conv_out = ops.conv_output_shape(x.shape[2:], w.shape[2:], **kw)
    pooled_shape = x.shape[:1] + w.shape[:1] + tuple(s // 2 for s in conv_out)
    grad_pooled = np.random.default_rng(seed).standard_normal(pooled_shape).astype(x.dtype)
    ref_pooled, indices, ref_grads = unfused(x, w, b, grad_pooled, mode, n_jobs, relu,
                                             **kw)
    got_pooled, codes, got_grads = fused(x, w, b, grad_pooled, mode, n_jobs, relu, **kw)
    assert_bitwise_equal(got_pooled, ref_pooled, "pooled output")
    assert codes.dtype == np.uint8
    if mode == "avg":
        # Bit k of a code: relu's output at cell k (row-major) of the window is > 0.
        relu_out = indices[..., :2 * pooled_shape[2], :2 * pooled_shape[3]]
        cells = [relu_out[..., i::2, j::2] for i in (0, 1) for j in (0, 1)]
        expected = sum((cell > 0).astype(np.uint8) << k for k, cell in enumerate(cells))
        np.testing.assert_array_equal(codes, expected if relu else 0)
    else:
        # A code is the winning cell's place in its 2x2 window; decoded, it is the
        # flat index that pool_with_indices returns.
        assert codes.max(initial=0) <= 3
        rows = 2 * np.arange(pooled_shape[2])[:, None] + codes // 2
        cols = 2 * np.arange(pooled_shape[3])[None, :] + codes % 2
        np.testing.assert_array_equal(rows * conv_out[1] + cols, indices)
    for name, got, exp in zip(("grad_x", "grad_w", "grad_b"), got_grads, ref_grads):
        assert_bitwise_equal(got, exp, name)


@st.composite
def fused_configs(draw):
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = draw(st.sampled_from([1, 2, (1, 2)]))
    padding = draw(st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 3),
                             st.tuples(st.integers(0, 3), st.integers(0, 3))))
    return dict(
        n=draw(st.integers(1, 4)),
        c=draw(st.integers(1, 7)),
        d=draw(st.integers(1, 18)),
        # up to 40 wide: several vectors of 8 windows per pooled row, odd sizes
        in_shape=(draw(st.integers(1, 20)), draw(st.integers(1, 40))),
        kernel=kernel,
        padding=padding,
        dilation=dilation,
        bias=draw(st.booleans()),
        integer_data=draw(st.booleans()),  # many ties in the pooling windows
        mode=draw(st.sampled_from(["max", "min", "avg"])),
        relu=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)),
        n_jobs=draw(st.sampled_from([1, 2, 3])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=fused_configs())
def test_property_fused_equals_unfused(cfg):
    kw = dict(padding=cfg["padding"], dilation=cfg["dilation"])
    assume(blocks._conv_pool_supported((cfg["c"],) + cfg["in_shape"], cfg["kernel"],
                                       mode=cfg["mode"], **kw))
    rng = np.random.default_rng(cfg["seed"])
    dtype = cfg["dtype"]
    x = rng.standard_normal((cfg["n"], cfg["c"]) + cfg["in_shape"])
    w = rng.standard_normal((cfg["d"], cfg["c"]) + cfg["kernel"])
    b = rng.standard_normal(cfg["d"]) if cfg["bias"] else None
    if cfg["integer_data"]:
        x, w = np.round(x), np.round(w)
        b = None if b is None else np.round(b)
    x, w = x.astype(dtype), w.astype(dtype)
    b = None if b is None else b.astype(dtype)
    check_fused_equals_unfused(x, w, b, cfg["mode"], cfg["seed"], cfg["n_jobs"],
                               cfg["relu"], **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode,relu", [("max", False), ("min", False), ("max", True),
                                       ("avg", True), ("avg", False)])
@pytest.mark.parametrize(
    "n,c,in_shape,d,kernel,kw",
    [
        (5, 1, (28, 28), 6, (5, 5), dict(padding="same")),  # LeNet-5 block 1
        (5, 6, (14, 14), 16, (5, 5), dict(padding="same")),  # LeNet-5 block 2
        (3, 6, (14, 14), 16, (5, 5), dict()),  # 10x10 -> 5x5
        (2, 3, (33, 17), 4, (3, 2), dict(padding=(1, 0))),  # odd conv output
        (2, 2, (3, 3), 3, (2, 2), dict()),  # 2x2 conv output: one window
    ],
)
def test_lenet_and_edge_geometries(dtype, mode, relu, n, c, in_shape, d, kernel, kw):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, c) + in_shape).astype(dtype)
    w = rng.standard_normal((d, c) + kernel).astype(dtype)
    b = rng.standard_normal(d).astype(dtype)
    check_fused_equals_unfused(x, w, b, mode, relu=relu, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["max", "min", "avg"])
@pytest.mark.parametrize("relu", [False, True])
def test_nan_and_infinities(dtype, mode, relu):
    # NaN wins its window in the pooling (the first NaN), infinities are ordinary
    # extremes (an average of +inf and -inf is NaN); relu keeps NaN; the backward has
    # non-finite inputs, so it takes the numpy fallback.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 12, 13)).astype(dtype)
    x[0, 0, 3, 4] = np.nan
    x[1, 1, 7, 2] = np.inf
    x[2, 0, 0, 0] = -np.inf
    w = rng.standard_normal((4, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    check_fused_equals_unfused(x, w, b, mode, relu=relu, padding="same")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "grad", "w"])
@pytest.mark.parametrize("sample", [0, 9, 18])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_one_non_finite_value_anywhere_takes_the_fallback(dtype, where, sample, bad,
                                                          n_jobs):
    # The backward kernel checks each sample's x and gradient as it reads them, on the
    # threads, and w before it starts: a single inf or NaN in any sample of either,
    # or in w, must send the whole call to the general path (the shifted path would
    # leak 0 * inf = NaN into sums that do not contain the bad cell).
    rng = np.random.default_rng(11)
    x = rng.standard_normal((19, 3, 10, 11)).astype(dtype)
    w = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    grad_pooled = rng.standard_normal((19, 5, 5, 5)).astype(dtype)
    if where == "x":
        x[sample, 2, 9, 10] = bad
    elif where == "grad":
        grad_pooled[sample, 4, 4, 4] = bad
    else:
        w[4, 1, 2, 0] = bad
    with np.errstate(invalid="ignore"):
        _, codes = blocks._conv_pool(x, w, b, padding="same", n_jobs=n_jobs)
        y = ops.conv(x, w, b, padding="same")
        _, indices = ops.pool_with_indices(y, 2)
        grad_y = ops.pool_backward_indices(grad_pooled, indices, y.shape)
        expected = ops.conv_backward(grad_y, x, w, padding="same")
        got = blocks._conv_pool_backward(grad_pooled, codes, x, w, padding="same",
                                         n_jobs=n_jobs)
    assert not all(np.isfinite(g).all() for g in got)
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, expected):
        assert_bitwise_equal(g, e, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_of_zeros_and_infinite_gradient(dtype):
    # relu's backward multiplies by (y > 0), so an infinite gradient on a cell that
    # relu set to zero gives NaN, as in the unfused layers (the fallback path).
    x = np.zeros((2, 1, 4, 4), dtype=dtype)
    w = np.full((2, 1, 1, 1), -0.0, dtype=dtype)
    b = np.array([-1.0, 1.0], dtype=dtype)
    check_fused_equals_unfused(x, w, b, "max", relu=True)
    out, codes = blocks._conv_pool(x, w, b, relu=True)
    assert (out[:, 0] == 0).all() and (out[:, 1] == 1).all()
    grad = np.full(out.shape, np.inf, dtype=dtype)
    got = blocks._conv_pool_backward(grad, codes, x, w, relu_output=out)
    with np.errstate(invalid="ignore"):
        _, _, expected = unfused(x, w, b, grad, "max", relu=True)
    assert np.isnan(got[2][0]) and got[2][1] == np.inf
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, expected):
        assert_bitwise_equal(g, e, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unpool_fallback_matches_kernel(dtype):
    # The numpy unpooling of the fallback path against the kernel's own, on finite
    # data where both apply.
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 10, 9)).astype(dtype)
    w = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    pooled, codes = blocks._conv_pool(x, w, None, padding=1)
    grad_pooled = rng.standard_normal(pooled.shape).astype(dtype)
    grad_y = blocks._unpool(grad_pooled, codes, (10, 9), (2, 2), (2, 2))
    expected = ops.conv_backward(grad_y, x, w, padding=1)
    got = blocks._conv_pool_backward(grad_pooled, codes, x, w, padding=1)
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, expected):
        assert_bitwise_equal(g, e, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 19, 64])
def test_thread_count_gives_bitwise_equal_results(dtype, n, monkeypatch):
    # n_jobs is capped at the usable cores: pretend to have more, so that 3 threads
    # (an odd split of the batch) run on a two-core machine too.
    monkeypatch.setattr("skconv._ops.threads._usable_cpu_count", lambda: 4)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 6, 14, 14)).astype(dtype)
    w = rng.standard_normal((16, 6, 5, 5)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    grad_pooled = rng.standard_normal((n, 16, 7, 7)).astype(dtype)
    for mode in ("max", "avg"):
        results = [fused(x, w, b, grad_pooled, mode, n_jobs, relu=True, padding="same")
                   for n_jobs in (1, 2, 3)]
        assert_same_fused_results(results)


def test_inference_skips_codes_and_first_layer_skips_grad_x():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    pooled, codes = blocks._conv_pool(x, w, None, padding="same", want_codes=False)
    assert codes is None
    reference, codes = blocks._conv_pool(x, w, None, padding="same")
    assert_bitwise_equal(pooled, reference, "pooled output")
    grad_x, grad_w, grad_b = blocks._conv_pool_backward(
        np.ones_like(pooled), codes, x, w, padding="same", compute_grad_x=False)
    assert grad_x is None
    _, ref_w, ref_b = blocks._conv_pool_backward(np.ones_like(pooled), codes, x, w,
                                                 padding="same")
    assert_bitwise_equal(grad_w, ref_w, "grad_w")
    assert_bitwise_equal(grad_b, ref_b, "grad_b")


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(dtype):
    x = np.zeros((0, 2, 6, 6), dtype=dtype)
    w = np.ones((3, 2, 3, 3), dtype=dtype)
    pooled, codes = blocks._conv_pool(x, w, np.ones(3, dtype=dtype))
    assert pooled.shape == codes.shape == (0, 3, 2, 2)
    grad_x, grad_w, grad_b = blocks._conv_pool_backward(pooled, codes, x, w)
    assert grad_x.shape == x.shape
    np.testing.assert_array_equal(grad_w, 0)
    np.testing.assert_array_equal(grad_b, 0)


@pytest.mark.parametrize(
    "x_shape,w_shape,kw",
    [
        ((2, 1, 8), (3, 1, 3), dict(pool_size=7)),  # 1-D: window past the output
        ((2, 1, 20), (3, 1, 3), dict(pool_size=9, mode="avg")),  # 1-D: avg of 8 cells
        ((2, 1, 300), (3, 1, 3), dict(pool_size=257)),  # codes are bytes
        ((2, 1, 4, 4, 4), (3, 1, 2, 2, 2), dict()),  # 3-D
        # stride 2 whose polyphase copy would dwarf the data: im2col, not fused
        ((2, 1, 5, 5), (3, 1, 3, 3), dict(stride=2, dilation=2**20, padding="same")),
        ((2, 1, 3, 8), (3, 1, 3, 3), dict()),  # convolution output 1 x 6
        ((2, 1, 9, 9), (3, 1, 3, 3), dict(pool_size=3)),  # 2-D: 2x2 only
    ],
)
def test_unsupported_geometry_is_reported(x_shape, w_shape, kw):
    x, w = np.ones(x_shape), np.ones(w_shape)
    assert not blocks._conv_pool_supported(x_shape[1:], w_shape[2:], **kw)
    with pytest.raises(ValueError, match="fused convolution and pooling needs"):
        blocks._conv_pool(x, w, **kw)


def test_bad_arguments():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 1, 6, 6))
    w = rng.standard_normal((3, 1, 3, 3))
    pooled, codes = blocks._conv_pool(x, w)
    with pytest.raises(ValueError, match="mode must be 'max', 'min' or 'avg'"):
        blocks._conv_pool(x, w, mode="median")
    with pytest.raises(ValueError, match="fused convolution and pooling needs"):
        blocks._conv_pool(x, w, mode="avg", pool_size=3)  # 2-D: 2x2 only
    with pytest.raises(ValueError, match=r"codes must have shape \(2, 3, 2, 2\)"):
        blocks._conv_pool_backward(pooled, codes[:, :, :1], x, w)
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 3, 2, 2\)"):
        blocks._conv_pool_backward(pooled[:1], codes, x, w)
    with pytest.raises(TypeError, match="codes must be uint8"):
        blocks._conv_pool_backward(pooled, codes.astype(np.int64), x, w)
    with pytest.raises(ValueError, match=r"relu_output must have shape \(2, 3, 2, 2\)"):
        blocks._conv_pool_backward(pooled, codes, x, w, relu_output=pooled[:1])
    with pytest.raises(ValueError, match="out"):
        blocks._conv_pool(x, w, out=np.empty((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="codes"):
        blocks._conv_pool(x, w, codes=np.empty((2, 3, 2, 2), dtype=np.int8))
    # codes written over the pooled output's bytes
    y = np.empty((2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"^codes must not share memory with out$"):
        blocks._conv_pool(x, w, out=y,
                             codes=y.view(np.uint8).reshape(-1)[:y.size].reshape(y.shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
def test_prepared_step_is_bitwise_the_op_and_checks_its_arrays(dtype, relu):
    # blocks._PreparedBatch (the layers' training path): the same outputs and
    # gradients as the op, every minibatch, and shapes other than the prepared ones,
    # or inputs that overlap its outputs, are refused rather than handed to a kernel.
    rng = np.random.default_rng(12)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    step = blocks._PreparedBatch((5, 3, 9, 8), w.shape, dtype, padding=1, relu=relu)
    grad_w, grad_b = np.empty_like(w), np.empty_like(b)
    for _ in range(3):  # the step's arrays are reused: every call must be right
        x = rng.standard_normal((5, 3, 9, 8)).astype(dtype)
        y, codes = step.forward(x, w, b, 2)
        ref_y, ref_codes = blocks._conv_pool(x, w, b, padding=1, relu=relu)
        assert_bitwise_equal(y, ref_y, "pooled output")
        np.testing.assert_array_equal(codes, ref_codes)
        grad = rng.standard_normal(y.shape).astype(dtype)
        grad_x = step.backward(grad, x, w, grad_w, grad_b, 2)
        expected = blocks._conv_pool_backward(grad, ref_codes, x, w, padding=1,
                                              relu_output=ref_y if relu else None)
        for name, g, e in zip(("grad_x", "grad_w", "grad_b"), (grad_x, grad_w, grad_b),
                              expected):
            assert_bitwise_equal(g, e, name)
    # A non-finite input: the step takes the general path, as the op does.
    x[2, 1, 3, 3] = np.nan
    grad[4, 0, 1, 1] = np.inf
    with np.errstate(invalid="ignore"):
        y, codes = step.forward(x, w, b, 2)
        ref_y, ref_codes = blocks._conv_pool(x, w, b, padding=1, relu=relu)
        grad_x = step.backward(grad, x, w, grad_w, grad_b, 2)
        expected = blocks._conv_pool_backward(grad, ref_codes, x, w, padding=1,
                                              relu_output=ref_y if relu else None)
    assert not np.isfinite(grad_w).all()
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"), (grad_x, grad_w, grad_b),
                          expected):
        assert_bitwise_equal(g, e, name)
    with pytest.raises(ValueError, match=r"x must have shape \(5, 3, 9, 8\)"):
        step.forward(np.zeros((6, 3, 9, 8), dtype), w, b, 1)
    with pytest.raises(ValueError, match="w must have shape"):
        step.forward(x, w[:, :2], b, 1)
    with pytest.raises(ValueError, match="grad_y must have shape"):
        step.backward(grad[:, :2], x, w, grad_w, grad_b, 1)
    with pytest.raises(ValueError, match="grad_w must have shape"):
        step.backward(grad, x, w, grad_w[:2], grad_b, 1)
    with pytest.raises(ValueError, match="must not share memory"):
        step.backward(grad, step.grad_x, w, grad_w, grad_b, 1)
    with pytest.raises(ValueError, match=r"^grad_b must not share memory with grad_w$"):
        step.backward(grad, x, w, grad_w, grad_w.reshape(-1)[:4], 1)
    with pytest.raises(ValueError, match=r"^grad_w must not share memory with the "
                                         r"step's grad_x$"):
        step.backward(grad, x, w, step.grad_x.reshape(-1)[:w.size].reshape(w.shape),
                      grad_b, 1)
