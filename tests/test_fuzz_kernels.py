"""Seeded, bounded fuzz test of the kernels against their slow twins.

Random geometries (1 to 3 spatial axes, strides, paddings, dilations, pooling windows,
modes, dtypes, thread counts, non-contiguous inputs) run through ``skconv.ops`` and
are compared with ``_reference_conv`` / ``_reference_pool``. Every output is written
into an ``out=`` array that sits between two guard zones of a larger buffer and is
filled with NaN first, so a kernel that writes a cell outside its output, or leaves
one unwritten, fails here even where Cython's bounds checks cannot see (raw pointers
in the C micro-kernels). CI also runs this file against the debug build (bounds and
initialisation checks on), so an out-of-bounds access in a new fast path shows up the
day it is written.

The configurations are drawn from one seeded RandomState: the same ones every run,
and a failure names its configuration. ``SKCONV_FUZZ_SEED`` draws another set and
``SKCONV_FUZZ_CASES`` scales their number (e.g. for a longer local run).

Tolerances are those of test_conv.py: ``|got - twin| <= tol * scale`` with ``scale``
the twin on absolute values, ``tol`` 1e-4 (float32) or 1e-10 (float64). Max and min
pooling and their indices are exact.
"""

import os

import numpy as np
import pytest

from skconv import ops
from skconv._ops import blocks
from skconv._ops.dense import dense, dense_backward
from skconv._ops.norm import batch_norm_backward, batch_norm_inference, batch_norm_train

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from . import _reference_conv as ref_conv
    from . import _reference_pool as ref_pool
except ImportError:
    import _reference_conv as ref_conv
    import _reference_pool as ref_pool

SEED = int(os.environ.get("SKCONV_FUZZ_SEED", "20240518"))
SCALE = float(os.environ.get("SKCONV_FUZZ_CASES", "1"))
N_CONV, N_POOL, N_FUSED, N_DENSE, N_NORM = (max(1, int(n * SCALE))
                                             for n in (60, 60, 25, 30, 30))
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
GUARD = 64  # cells of guard zone on each side of an output


def _guarded(shape, dtype):
    """An output array inside a larger buffer: (out, buffer, sentinel).

    The output is NaN (or an impossible integer) so that an unwritten cell shows; the
    guard zones hold a sentinel that no kernel would write.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    sentinel, unwritten = {"f": (1.25e-3, np.nan), "i": (-12345, -7),
                           "u": (201, 250)}[dtype.kind]
    buffer = np.full(size + 2 * GUARD, sentinel, dtype=dtype)
    out = buffer[GUARD:GUARD + size].reshape(shape)
    out[...] = unwritten
    return out, buffer, dtype.type(sentinel)


def _check_guards(guarded, what):
    out, buffer, sentinel = guarded
    assert (buffer[:GUARD] == sentinel).all(), f"{what}: written before its start"
    assert (buffer[-GUARD:] == sentinel).all(), f"{what}: written past its end"


def _assert_close(got, expected, scale, what):
    assert np.isfinite(got).all(), f"{what}: non-finite (unwritten?) cells"
    err = np.abs(got.astype(np.float64) - expected)
    bad = err > TOL[got.dtype] * scale
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.size} cells out of tolerance, first at "
        f"{tuple(np.argwhere(bad)[0])}")


def _maybe_strided(rng, array):
    """``array`` itself or an equal non-contiguous view (the ops copy those)."""
    if rng.rand() < 0.25:
        wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        wide[..., ::2] = array
        return wide[..., ::2]
    return array


def _conv_case(rng):
    n_axes = rng.randint(1, 4)
    # Longer rows in 1-D and 2-D reach the vector tails of the stride-1 path.
    max_size = {1: 40, 2: 14, 3: 6}[n_axes]
    kernel = tuple(int(k) for k in rng.randint(1, 5, n_axes))
    stride = tuple(int(s) for s in rng.choice([1, 1, 1, 2, 3], n_axes))
    dilation = tuple(int(d) for d in rng.choice([1, 1, 2, 3], n_axes))
    choice = rng.randint(4)
    padding = ("valid", "same", int(rng.randint(0, 4)),
               tuple(int(p) for p in rng.randint(0, 4, n_axes)))[choice]
    pads = ref_conv.resolve_padding(padding, (max_size,) * n_axes, kernel, stride,
                                    dilation)
    # Each axis at least as long as the dilated kernel needs (after padding).
    lows = [max(1, d * (k - 1) + 1 - lo - hi) for k, d, (lo, hi) in
            zip(kernel, dilation, pads)]
    in_shape = tuple(int(rng.randint(low, max(low, max_size) + 1)) for low in lows)
    return dict(n=int(rng.randint(1, 4)), c=int(rng.randint(1, 6)),
                d=int(rng.randint(1, 7)), in_shape=in_shape, kernel=kernel,
                kw=dict(stride=stride, padding=padding, dilation=dilation),
                dtype=str(rng.choice(["float32", "float64"])), bias=rng.rand() < 0.7,
                n_jobs=int(rng.choice([1, 2])), seed=int(rng.randint(2**31)))


def _pool_case(rng):
    n_axes = rng.randint(1, 4)
    max_size = {1: 24, 2: 10, 3: 5}[n_axes]
    window = tuple(int(k) for k in rng.randint(1, 4, n_axes))
    stride = (None, int(rng.randint(1, 4)),
              tuple(int(s) for s in rng.randint(1, 4, n_axes)))[rng.randint(3)]
    padding = ("valid", "same", int(rng.randint(0, min(window))),
               tuple(int(rng.randint(0, k)) for k in window))[rng.randint(4)]
    in_shape = tuple(int(rng.randint(k, max_size + 1)) for k in window)
    return dict(shape=(int(rng.randint(1, 3)), int(rng.randint(1, 4))) + in_shape,
                pool_size=window, stride=stride, padding=padding,
                mode=str(rng.choice(["max", "avg", "min"])),
                dtype=str(rng.choice(["float32", "float64"])), ties=rng.rand() < 0.3,
                n_jobs=int(rng.choice([1, 2])), seed=int(rng.randint(2**31)))


def _cases(make, count, offset):
    rng = np.random.RandomState(SEED + offset)
    return [make(rng) for _ in range(count)]


def _id(case):
    return ",".join(f"{k}={v}" for k, v in case.items() if k != "seed")


CONV_CASES = _cases(_conv_case, N_CONV, 0)
POOL_CASES = _cases(_pool_case, N_POOL, 1)


@pytest.mark.parametrize("case", CONV_CASES, ids=[f"conv{i}" for i in range(N_CONV)])
def test_conv_forward_backward_match_twin(case):
    rng = np.random.RandomState(case["seed"])
    dtype, kw = np.dtype(case["dtype"]), case["kw"]
    x = rng.standard_normal((case["n"], case["c"]) + case["in_shape"]).astype(dtype)
    w = rng.standard_normal((case["d"], case["c"]) + case["kernel"]).astype(dtype)
    b = rng.standard_normal(case["d"]).astype(dtype) if case["bias"] else None
    try:
        out_shape = ops.conv_output_shape(case["in_shape"], case["kernel"], **kw)
    except ValueError:
        pytest.fail(f"drew a configuration the ops refuse: {_id(case)}")
    y_out = _guarded(x.shape[:1] + w.shape[:1] + out_shape, dtype)
    y = ops.conv(_maybe_strided(rng, x), w, b, n_jobs=case["n_jobs"], out=y_out[0],
                 **kw)
    assert y is y_out[0]
    _check_guards(y_out, f"y of {_id(case)}")
    expected = ref_conv.conv_ref(x, w, b, **kw)
    scale = ref_conv.conv_ref(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                              **kw)
    _assert_close(y, expected, scale, f"y of {_id(case)}")

    grad_y = rng.standard_normal(y.shape).astype(dtype)
    outs = [_guarded(x.shape, dtype), _guarded(w.shape, dtype),
            _guarded(w.shape[:1], dtype)]
    grads = ops.conv_backward(_maybe_strided(rng, grad_y), x, w, n_jobs=case["n_jobs"],
                              out=tuple(o[0] for o in outs), **kw)
    expected = ref_conv.conv_backward_ref(grad_y, x, w, **kw)
    scale = ref_conv.conv_backward_ref(np.abs(grad_y), np.abs(x), np.abs(w), **kw)
    for name, got, guarded, e, s in zip(("grad_x", "grad_w", "grad_b"), grads, outs,
                                        expected, scale):
        assert got is guarded[0]
        _check_guards(guarded, f"{name} of {_id(case)}")
        _assert_close(got, e, s, f"{name} of {_id(case)}")


@pytest.mark.parametrize("case", POOL_CASES, ids=[f"pool{i}" for i in range(N_POOL)])
def test_pool_forward_backward_match_twin(case):
    rng = np.random.RandomState(case["seed"])
    dtype = np.dtype(case["dtype"])
    if case["ties"]:  # few distinct values: the first-extreme rule decides
        x = rng.randint(-2, 3, case["shape"]).astype(dtype)
    else:
        x = rng.standard_normal(case["shape"]).astype(dtype)
    kw = dict(stride=case["stride"], padding=case["padding"], mode=case["mode"])
    geometry = ref_pool.geometry(x.shape[2:], case["pool_size"], case["stride"],
                                 case["padding"])
    assert geometry is not None, f"drew a window with no real cell: {_id(case)}"
    y_shape = x.shape[:2] + geometry[3]
    y_out = _guarded(y_shape, dtype)
    y = ops.pool(_maybe_strided(rng, x), case["pool_size"], n_jobs=case["n_jobs"],
                 out=y_out[0], **kw)
    _check_guards(y_out, f"y of {_id(case)}")
    y_ref = ref_pool.pool(x, case["pool_size"], **kw)
    if case["mode"] == "avg":
        scale = ref_pool.pool(np.abs(x), case["pool_size"], **kw)
        _assert_close(y, y_ref.astype(np.float64), scale, f"y of {_id(case)}")
    else:
        np.testing.assert_array_equal(y, y_ref, err_msg=f"y of {_id(case)}")

    grad_y = rng.standard_normal(y_shape).astype(dtype)
    gx_out = _guarded(x.shape, dtype)
    grad_x = ops.pool_backward(grad_y, x, case["pool_size"], n_jobs=case["n_jobs"],
                               out=gx_out[0], **kw)
    _check_guards(gx_out, f"grad_x of {_id(case)}")
    expected = ref_pool.pool_backward(grad_y, x, case["pool_size"], **kw)
    scale = ref_pool.pool_backward(np.abs(grad_y), x, case["pool_size"], **kw)
    _assert_close(grad_x, expected, scale, f"grad_x of {_id(case)}")

    if case["mode"] != "avg":
        outs = (_guarded(y_shape, dtype), _guarded(y_shape, np.int64))
        y_idx, idx = ops.pool_with_indices(x, case["pool_size"], n_jobs=case["n_jobs"],
                                           out=(outs[0][0], outs[1][0]), **kw)
        for name, guarded in zip(("y", "indices"), outs):
            _check_guards(guarded, f"{name} of pool_with_indices {_id(case)}")
        np.testing.assert_array_equal(y_idx, y_ref)
        gi_out = _guarded(x.shape, dtype)
        ops.pool_backward_indices(grad_y, idx, x.shape, n_jobs=case["n_jobs"],
                                  out=gi_out[0])
        _check_guards(gi_out, f"pool_backward_indices of {_id(case)}")
        np.testing.assert_array_equal(gi_out[0], grad_x)  # bitwise, as documented

    g = ops.global_pool(x, case["mode"], n_jobs=case["n_jobs"])
    g_ref = ref_pool.global_pool(x, case["mode"])
    if case["mode"] == "avg":
        _assert_close(g, g_ref.astype(np.float64), ref_pool.global_pool(np.abs(x)),
                      f"global_pool of {_id(case)}")
    else:
        np.testing.assert_array_equal(g, g_ref, err_msg=f"global_pool of {_id(case)}")


def _fused_case(rng):
    kernel = tuple(int(k) for k in rng.randint(1, 6, 2))
    dilation = (1, 2, (1, 2))[rng.randint(3)]
    padding = ("valid", "same", int(rng.randint(0, 3)),
               tuple(int(p) for p in rng.randint(0, 3, 2)))[rng.randint(4)]
    return dict(n=int(rng.randint(1, 4)), c=int(rng.randint(1, 5)),
                d=int(rng.randint(1, 12)),
                in_shape=(int(rng.randint(2, 14)), int(rng.randint(2, 34))),
                kernel=kernel, padding=padding, dilation=dilation,
                mode=str(rng.choice(["max", "min"])), relu=bool(rng.rand() < 0.5),
                dtype=str(rng.choice(["float32", "float64"])),
                n_jobs=int(rng.choice([1, 2])), seed=int(rng.randint(2**31)))


def _fused_strided_case(rng):
    # Images with a strided convolution: the polyphase copy, phases of either axis
    # (strides 2 and 3, one axis strided only), kernels smaller and larger than the
    # stride.
    case = _fused_case(rng)
    case["stride"] = ((2, 2), (3, 3), (2, 3), (1, 2), (2, 1))[rng.randint(5)]
    case["in_shape"] = (int(rng.randint(4, 24)), int(rng.randint(4, 48)))
    return case


def _fused1d_case(rng):
    # Signals: any convolution stride, pooling window and stride (overlaps and gaps),
    # max, min or average, long enough rows for several blocks of windows and the
    # vector tails of each.
    kernel = (int(rng.randint(1, 10)),)
    window = int(rng.randint(1, 6))
    return dict(n=int(rng.randint(1, 4)), c=int(rng.randint(1, 14)),
                d=int(rng.randint(1, 34)), in_shape=(int(rng.randint(window + 8, 400)),),
                kernel=kernel, stride=int(rng.choice([1, 1, 2, 3])),
                padding=("valid", "same", int(rng.randint(0, 5)))[rng.randint(3)],
                dilation=int(rng.choice([1, 1, 2, 3])), pool_size=window,
                pool_stride=int(rng.choice([window, window, 1, 2, 3, 5])),
                mode=str(rng.choice(["max", "min", "avg"])), relu=bool(rng.rand() < 0.5),
                dtype=str(rng.choice(["float32", "float64"])),
                n_jobs=int(rng.choice([1, 2])), seed=int(rng.randint(2**31)))


def _fused_supported(case):
    return blocks._conv_pool_supported(
        (case["c"],) + case["in_shape"], case["kernel"],
        pool_size=case.get("pool_size", 2), pool_stride=case.get("pool_stride"),
        mode=case["mode"], stride=case.get("stride", 1), padding=case["padding"],
        dilation=case["dilation"])


FUSED_CASES = ([case for case in _cases(_fused_case, 4 * N_FUSED, 2)
                if _fused_supported(case)][:N_FUSED]
               + [case for case in _cases(_fused1d_case, 4 * N_FUSED, 5)
                  if _fused_supported(case)][:N_FUSED]
               + [case for case in _cases(_fused_strided_case, 4 * N_FUSED, 7)
                  if _fused_supported(case)][:N_FUSED])


@pytest.mark.parametrize("case", FUSED_CASES, ids=[f"fused{i}" for i in
                                                   range(len(FUSED_CASES))])
def test_fused_conv_pool_is_bitwise_the_ops(case):
    # The fused convolution + pooling (+ relu) of the network's training path, 2x2 on
    # images; any window, max, min or average, after any stride on signals: the
    # unfused ops, themselves checked against the twins above, bit for bit.
    rng = np.random.RandomState(case["seed"])
    dtype = np.dtype(case["dtype"])
    x = rng.standard_normal((case["n"], case["c"]) + case["in_shape"]).astype(dtype)
    w = rng.standard_normal((case["d"], case["c"]) + case["kernel"]).astype(dtype)
    b = rng.standard_normal(case["d"]).astype(dtype)
    kw = dict(stride=case.get("stride", 1), padding=case["padding"],
              dilation=case["dilation"])
    pool = dict(pool_size=case.get("pool_size", 2), pool_stride=case.get("pool_stride"))
    average = case["mode"] == "avg"
    conv_y = ops.conv(x, w, b, **kw)
    if average:  # relu first, as a network runs them
        relu_y = np.maximum(conv_y, 0) if case["relu"] else conv_y
        pooled = ops.pool(relu_y, pool["pool_size"], stride=pool["pool_stride"],
                          mode="avg")
    else:
        pooled, indices = ops.pool_with_indices(conv_y, pool["pool_size"],
                                                stride=pool["pool_stride"],
                                                mode=case["mode"])
        if case["relu"]:
            pooled = np.maximum(pooled, 0)
    y_out, codes_out = _guarded(pooled.shape, dtype), _guarded(pooled.shape, np.uint8)
    y, codes = blocks._conv_pool(x, w, b, mode=case["mode"], relu=case["relu"],
                                 n_jobs=case["n_jobs"], out=y_out[0], codes=codes_out[0],
                                 **pool, **kw)
    _check_guards(y_out, f"y of {_id(case)}")
    _check_guards(codes_out, f"codes of {_id(case)}")
    np.testing.assert_array_equal(y, pooled, err_msg=_id(case))

    grad_y = rng.standard_normal(y.shape).astype(dtype)
    if average:
        grad_conv = ops.pool_backward(grad_y, relu_y, pool["pool_size"],
                                      stride=pool["pool_stride"], mode="avg")
        if case["relu"]:
            grad_conv = grad_conv * (relu_y > 0)
    else:
        grad_pooled = grad_y * (pooled > 0) if case["relu"] else grad_y
        grad_conv = ops.pool_backward_indices(grad_pooled, indices, conv_y.shape)
    expected = ops.conv_backward(grad_conv, x, w, **kw)
    outs = [_guarded(x.shape, dtype), _guarded(w.shape, dtype), _guarded((case["d"],),
                                                                        dtype)]
    grads = blocks._conv_pool_backward(
        grad_y, codes, x, w, mode=case["mode"], relu=case["relu"],
        relu_output=y if case["relu"] and not average else None, n_jobs=case["n_jobs"],
        out=tuple(o[0] for o in outs), **pool, **kw)
    for name, got, guarded, e in zip(("grad_x", "grad_w", "grad_b"), grads, outs,
                                     expected):
        _check_guards(guarded, f"{name} of {_id(case)}")
        np.testing.assert_array_equal(got, e, err_msg=f"{name} of {_id(case)}")


def _dense_case(rng):
    # Units below, at and past a vector's lanes (16 float32, 8 float64), rows across
    # the forward's tasks of 32.
    return dict(n=int(rng.randint(1, 80)), f=int(rng.randint(1, 300)),
                u=int(rng.choice([1, 3, 8, 10, 16, 17, 33, 84, 120])),
                relu=bool(rng.rand() < 0.5), dtype=str(rng.choice(["float32", "float64"])),
                n_jobs=int(rng.choice([1, 2])), seed=int(rng.randint(2**31)))


DENSE_CASES = _cases(_dense_case, N_DENSE, 3)


@pytest.mark.parametrize("case", DENSE_CASES, ids=[f"dense{i}" for i in range(N_DENSE)])
def test_dense_forward_backward_match_numpy(case):
    rng = np.random.RandomState(case["seed"])
    dtype = np.dtype(case["dtype"])
    n, f, u = case["n"], case["f"], case["u"]
    x, w = rng.standard_normal((n, f)).astype(dtype), rng.standard_normal((f, u)).astype(dtype)
    b = rng.standard_normal(u).astype(dtype)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    y_out = _guarded((n, u), dtype)
    y = dense(_maybe_strided(rng, x), w, b, relu=case["relu"], n_threads=case["n_jobs"],
              out=y_out[0])
    _check_guards(y_out, f"y of {_id(case)}")
    exact = x64 @ w64 + b
    if case["relu"]:
        exact = np.maximum(exact, 0)
    scale = np.abs(x64) @ np.abs(w64) + np.abs(b)
    _assert_close(y, exact, scale, f"y of {_id(case)}")

    grad_y = rng.standard_normal((n, u)).astype(dtype)
    outs = [_guarded((f, u), dtype), _guarded((u,), dtype), _guarded((n, f), dtype)]
    relu_output = y if case["relu"] else None
    g = grad_y * (y > 0) if case["relu"] else grad_y
    dense_backward(grad_y.copy(), x, w, outs[0][0], outs[1][0], relu_output=relu_output,
                   n_threads=case["n_jobs"], grad_x=outs[2][0])
    g64 = g.astype(np.float64)
    for name, guarded, e, sc in (
            ("grad_w", outs[0], x64.T @ g64, np.abs(x64.T) @ np.abs(g64)),
            ("grad_b", outs[1], g64.sum(axis=0), np.abs(g64).sum(axis=0)),
            ("grad_x", outs[2], g64 @ w64.T, np.abs(g64) @ np.abs(w64.T))):
        _check_guards(guarded, f"{name} of {_id(case)}")
        _assert_close(guarded[0], e, sc, f"{name} of {_id(case)}")


def _norm_case(rng):
    n_axes = int(rng.randint(0, 4))
    spatial = tuple(int(k) for k in rng.randint(1, {0: 1, 1: 30, 2: 9, 3: 5}[n_axes] + 1,
                                                n_axes))
    return dict(shape=(int(rng.randint(1, 9)), int(rng.randint(1, 7))) + spatial,
                eps=float(rng.choice([1e-5, 1e-3])),
                dtype=str(rng.choice(["float32", "float64"])),
                n_jobs=int(rng.choice([1, 2])), seed=int(rng.randint(2**31)))


NORM_CASES = _cases(_norm_case, N_NORM, 4)


@pytest.mark.parametrize("case", NORM_CASES, ids=[f"norm{i}" for i in range(N_NORM)])
def test_batch_norm_matches_the_formulas(case):
    # Training forward, backward and inference against the textbook formulas in
    # float64, every output between guard zones; the cases of odd seeds weigh their
    # rows (zero weights included).
    rng = np.random.RandomState(case["seed"])
    dtype, shape, eps = np.dtype(case["dtype"]), case["shape"], case["eps"]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    c = shape[1]
    gamma, beta = rng.uniform(0.5, 2, c).astype(dtype), rng.standard_normal(c).astype(dtype)
    axes, per_channel = (0,) + tuple(range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
    weights = None
    cell_weights = np.ones(shape)
    if case["seed"] % 2:
        weights = np.random.RandomState(case["seed"] + 1).choice([0, 0.5, 1, 2], shape[0])
        weights[0] = 1.5
        cell_weights = cell_weights * weights.reshape((-1,) + (1,) * (x.ndim - 1))
    count = cell_weights.sum(axis=axes)
    x64 = x.astype(np.float64)
    mean = (cell_weights * x64).sum(axis=axes) / count
    var = (cell_weights * (x64 - mean.reshape(per_channel)) ** 2).sum(axis=axes) / count
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = (x64 - mean.reshape(per_channel)) * inv_std.reshape(per_channel)
    what = _id(case) + ("" if weights is None else " weighted")

    outs = [_guarded(shape, dtype), _guarded(shape, dtype)]
    y, got_x_hat, got_mean, got_var, _ = batch_norm_train(
        x, gamma, beta, eps=eps, sample_weight=weights, n_jobs=case["n_jobs"],
        out=tuple(o[0] for o in outs))
    for name, guarded in zip(("y", "x_hat"), outs):
        _check_guards(guarded, f"{name} of {what}")
    ones = np.ones(shape)
    _assert_close(got_x_hat, x_hat, np.abs(x_hat) + 1, f"x_hat of {what}")
    exact_y = gamma.reshape(per_channel) * x_hat + beta.reshape(per_channel)
    _assert_close(y, exact_y, np.abs(exact_y) + np.abs(gamma.reshape(per_channel)) * ones,
                  f"y of {what}")
    _assert_close(got_mean, mean, (cell_weights * np.abs(x64)).sum(axis=axes) / count,
                  f"mean of {what}")

    grad_y = rng.standard_normal(shape).astype(dtype)
    g64 = grad_y.astype(np.float64)
    share = cell_weights / count.reshape(per_channel)  # d mean / d x
    sum_g, sum_gx = g64.sum(axis=axes), (g64 * x_hat).sum(axis=axes)
    exact_gx = (gamma.astype(np.float64) * inv_std).reshape(per_channel) * (
        g64 - share * (sum_g.reshape(per_channel) + x_hat * sum_gx.reshape(per_channel)))
    outs = [_guarded(shape, dtype), _guarded((c,), dtype), _guarded((c,), dtype)]
    batch_norm_backward(grad_y, got_x_hat, gamma, inv_std, sample_weight=weights,
                        n_jobs=case["n_jobs"], out=tuple(o[0] for o in outs))
    scale_g = np.abs(g64).sum(axis=axes)
    for name, guarded, exact, scale in (
            ("grad_x", outs[0], exact_gx,
             (np.abs(gamma) * inv_std * 3).reshape(per_channel) * (
                 np.abs(g64) + share * scale_g.reshape(per_channel) * (1 + np.abs(x_hat)))),
            ("grad_gamma", outs[1], sum_gx, np.abs(g64 * x_hat).sum(axis=axes)),
            ("grad_beta", outs[2], sum_g, scale_g)):
        _check_guards(guarded, f"{name} of {what}")
        _assert_close(guarded[0], exact, scale, f"{name} of {what}")

    out = _guarded(shape, dtype)
    y = batch_norm_inference(x, gamma, beta, mean, var, eps=eps, n_jobs=case["n_jobs"],
                             out=out[0])
    _check_guards(out, f"inference of {what}")
    _assert_close(y, exact_y, np.abs(exact_y) + np.abs(gamma.reshape(per_channel)) * (
        np.abs(x_hat) + 1), f"inference of {what}")


def test_the_fuzz_covers_the_kernel_paths():
    # The draw itself: every path the kernels pick between occurs (stride 1 and
    # strided convolutions on 1 to 3 axes, 'same' and int padding, dilation,
    # every pooling mode, both dtypes, two threads, enough fused cases of images and
    # of signals).
    assert {c["kw"]["stride"] == (1,) * len(c["kernel"]) for c in CONV_CASES} == {
        True, False}
    assert {len(c["kernel"]) for c in CONV_CASES} == {1, 2, 3}
    # Strided signals take the polyphase rows, other strided maps the polyphase copy.
    assert {len(c["kernel"]) for c in CONV_CASES if c["kw"]["stride"] != (1,) * len(
        c["kernel"])} == {1, 2, 3}
    assert {len(c["shape"]) - 2 for c in POOL_CASES} == {1, 2, 3}
    assert {c["kw"]["padding"] == "same" for c in CONV_CASES} == {True, False}
    assert any(max(c["kw"]["dilation"]) > 1 for c in CONV_CASES)
    assert {c["mode"] for c in POOL_CASES} == {"max", "avg", "min"}
    assert {c["dtype"] for c in CONV_CASES + POOL_CASES} == {"float32", "float64"}
    assert {c["n_jobs"] for c in CONV_CASES} == {1, 2}
    assert len(FUSED_CASES) == 3 * N_FUSED
    signals = [c for c in FUSED_CASES if len(c["in_shape"]) == 1]
    assert len(signals) == N_FUSED
    strided_images = [c for c in FUSED_CASES if len(c["in_shape"]) == 2
                      and c.get("stride", 1) != 1]
    assert len(strided_images) == N_FUSED
    assert {c["stride"][0] for c in strided_images} >= {1, 2, 3}
    # Overlapping windows, gaps between windows, several blocks of windows (128),
    # strided convolutions, every mode.
    assert {c["mode"] for c in signals} == {"max", "min", "avg"}
    assert any(c["stride"] > 1 for c in signals)
    assert any(c["pool_stride"] < c["pool_size"] for c in signals)
    assert any(c["pool_stride"] > c["pool_size"] for c in signals)
    assert any(c["in_shape"][0] > 128 * c["pool_stride"] * c["stride"] for c in signals)
    assert {c["u"] < 8 for c in DENSE_CASES} == {True, False}
    assert any(c["n"] > 32 for c in DENSE_CASES)
    assert {len(c["shape"]) for c in NORM_CASES} == {2, 3, 4, 5}
