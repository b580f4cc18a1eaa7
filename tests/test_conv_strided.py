"""Tests of the strided convolutions of images and volumes on the polyphase copy
(``skconv._kernels.conv``: ``_copy_x``, ``_phase_taps``, ``_sample_input_grad_phases``,
``_phases_fit``) and of the fused 2x2 block after a strided convolution
(``skconv._ops.blocks.ConvPool2x2Block``).

The polyphase path sums each output in the micro-kernels' order (the rows
``(c, k0, k1, k2)`` in order), not BLAS's, so it is checked against the slow twins
(``_reference_conv``) on many geometries: LeNet's and RGB shapes, strides 2 to 5 on
either axis, kernels smaller than the stride (phases no tap reaches), strides longer
than the padded input (fewer phases held than the stride), dilation, padding, both
dtypes, volumes; gradients by central differences in float64; bitwise the same for
any thread count; the im2col fallbacks (non-finite inputs, a copy that would dwarf
the data) where they still run. The fused block must equal the unfused ops bit for
bit, as the stride-1 block does (test_conv_pool_fused.py).
"""

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from skconv import ops
from skconv._nn.network import Network
from skconv._nn.lenet import build_lenet5
from skconv._ops import blocks
from skconv._ops import conv as conv_ops
from skconv._ops.validation import to_3d, view_3d

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from . import _reference_conv as ref
    from ._bitwise import assert_same_fused_results
    from ._finite_differences import central_differences
    from .test_conv import check_against_twin, random_problem
    from .test_conv_pool_fused import check_fused_equals_unfused, fused
except ImportError:
    import _reference_conv as ref
    from _bitwise import assert_same_fused_results
    from _finite_differences import central_differences
    from test_conv import check_against_twin, random_problem
    from test_conv_pool_fused import check_fused_equals_unfused, fused

DTYPES = [np.float32, np.float64]

# (n, c, in_shape, d, kernel, kw)
GEOMETRIES = [
    (4, 1, (28, 28), 6, (5, 5), dict(stride=2, padding="same")),  # LeNet-5, stride 2
    (3, 6, (7, 7), 16, (5, 5), dict(stride=2, padding="same")),  # its second block
    (3, 3, (32, 32), 16, (3, 3), dict(stride=2, padding="same")),  # RGB
    (2, 1, (32, 32), 6, (7, 7), dict(stride=2, padding="same")),
    (2, 2, (17, 23), 5, (2, 3), dict(stride=3)),  # taps missing some phases
    (2, 2, (15, 16), 3, (4, 1), dict(stride=(1, 2), padding=(2, 0))),  # one axis
    (2, 2, (16, 15), 3, (1, 4), dict(stride=(2, 1), padding=1)),
    (2, 3, (9, 11), 4, (3, 3), dict(stride=2, dilation=2, padding="same")),  # one phase
    (2, 1, (13, 12), 2, (3, 2), dict(stride=(4, 5), dilation=(1, 3))),
    (2, 2, (5, 6), 3, (3, 3), dict(stride=9, padding=1)),  # stride past the input
    (1, 1, (1, 1), 1, (2, 1), dict(stride=(1, 2), padding="same", dilation=2)),
    (2, 1, (3, 3), 2, (1, 1), dict(stride=2)),  # 1x1 kernel: one phase of four
    (2, 2, (6, 7, 8), 3, (3, 2, 3), dict(stride=2, padding="same")),  # volumes
    (1, 1, (5, 9, 7), 2, (2, 3, 1), dict(stride=(1, 2, 3), dilation=(2, 1, 1))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("n,c,in_shape,d,kernel,kw", GEOMETRIES)
def test_strided_geometries_match_twin(dtype, n_jobs, n, c, in_shape, d, kernel, kw):
    x, w, b = random_problem(np.random.default_rng(1), n, c, d, in_shape, kernel, dtype)
    assert not _uses_im2col(x, w, **kw)
    check_against_twin(x, w, b, None, dtype, n_jobs=n_jobs, **kw)


@st.composite
def strided_configs(draw):
    n_axes = draw(st.sampled_from([2, 2, 3]))
    kernel = tuple(draw(st.integers(1, 6 if n_axes == 2 else 3)) for _ in range(n_axes))
    stride = tuple(draw(st.integers(1, 5)) for _ in range(n_axes))
    assume(max(stride) > 1)
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(n_axes))
    limit = 30 if n_axes == 2 else 9
    return dict(
        n=draw(st.integers(1, 3)), c=draw(st.integers(1, 5)), d=draw(st.integers(1, 18)),
        in_shape=tuple(draw(st.integers(1, limit)) for _ in range(n_axes)),
        kernel=kernel, stride=stride, dilation=dilation,
        padding=draw(st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 4))),
        dtype=draw(st.sampled_from(DTYPES)), n_jobs=draw(st.sampled_from([1, 2])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=strided_configs())
def test_property_strided_matches_twin(cfg):
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    try:
        ops.conv_output_shape(cfg["in_shape"], cfg["kernel"], **kw)
    except ValueError:  # the kernel does not fit
        assume(False)
    rng = np.random.default_rng(cfg["seed"])
    x, w, b = random_problem(rng, cfg["n"], cfg["c"], cfg["d"], cfg["in_shape"],
                             cfg["kernel"], cfg["dtype"])
    check_against_twin(x, w, b, None, cfg["dtype"], n_jobs=cfg["n_jobs"], **kw)


@pytest.mark.parametrize("kw", [dict(stride=2, padding="same"),
                                dict(stride=(3, 2), padding=1, dilation=(1, 2))])
def test_gradients_by_central_differences(kw):
    rng = np.random.default_rng(2)
    x, w, b = random_problem(rng, 2, 2, 3, (9, 8), (3, 3), np.float64)
    grad_y = rng.standard_normal(ops.conv(x, w, b, **kw).shape)
    grads = ops.conv_backward(grad_y, x, w, **kw)

    def loss():
        return float(np.sum(ops.conv(x, w, b, **kw) * grad_y))

    for got, array in zip(grads, (x, w, b)):
        np.testing.assert_allclose(got, central_differences(loss, array, 1e-5),
                                   rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 19, 40])
def test_thread_count_gives_bitwise_equal_results(dtype, n, monkeypatch):
    # As in test_conv_pool_fused.py: 3 threads (an odd split) on two cores too.
    monkeypatch.setattr("skconv._ops.threads._usable_cpu_count", lambda: 4)
    rng = np.random.default_rng(3)
    x, w, b = random_problem(rng, n, 3, 16, (32, 32), (3, 3), dtype)
    kw = dict(stride=2, padding="same")
    grad_y = rng.standard_normal((n, 16, 16, 16)).astype(dtype)
    grad_pooled = rng.standard_normal((n, 16, 8, 8)).astype(dtype)
    results = [(ops.conv(x, w, b, n_jobs=n_jobs, **kw), np.zeros(1),
                ops.conv_backward(grad_y, x, w, n_jobs=n_jobs, **kw))
               for n_jobs in (1, 2, 3)]
    assert_same_fused_results(results)
    assert_same_fused_results([fused(x, w, b, grad_pooled, "max", n_jobs, **kw)
                               for n_jobs in (1, 2, 3)])


def _uses_im2col(x, w, **kw):
    """Whether the kernel takes im2col (and BLAS) for this strided convolution of
    finite inputs."""
    stride, pads, dilation, out = conv_ops._conv_geometry(
        x.shape[2:], w.shape[2:], kw.get("stride", 1), kw.get("padding", 0),
        kw.get("dilation", 1))
    y = np.empty(x.shape[:1] + w.shape[:1] + out)
    return conv_ops._uses_blas((view_3d(x), view_3d(w), view_3d(y)), to_3d(stride, 1),
                               to_3d([lo for lo, _ in pads], 0), to_3d(dilation, 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dilation", [2**20, (1, 2**12)])
def test_a_copy_that_would_dwarf_the_data_takes_im2col(dtype, dilation):
    # A huge dilation with 'same' padding around a small input: the polyphase copy
    # would span the padding, im2col holds the taps on the input only. The choice
    # depends on the geometry alone, and no fused block is offered for it.
    x, w, b = random_problem(np.random.default_rng(4), 2, 2, 3, (5, 6), (3, 3), dtype)
    kw = dict(stride=2, padding="same", dilation=dilation)
    assert _uses_im2col(x, w, **kw)
    # The twin would pad the input by the dilation: sum the taps that land on it.
    stride, pads, dil, out = conv_ops._conv_geometry(x.shape[2:], (3, 3), 2, "same",
                                                     dilation)
    expected = np.zeros(x.shape[:1] + w.shape[:1] + out) + b[:, None, None]
    for i in range(out[0]):
        for j in range(out[1]):
            for k0 in range(3):
                for k1 in range(3):
                    q0 = i * stride[0] + k0 * dil[0] - pads[0][0]
                    q1 = j * stride[1] + k1 * dil[1] - pads[1][0]
                    if 0 <= q0 < x.shape[2] and 0 <= q1 < x.shape[3]:
                        expected[:, :, i, j] += (x[:, :, q0, q1].astype(np.float64)
                                                 @ w[:, :, k0, k1].T)
    np.testing.assert_allclose(ops.conv(x, w, b, **kw), expected, rtol=1e-5, atol=1e-5)
    assert not blocks._conv_pool_supported(x.shape[1:], w.shape[2:], **kw)
    assert blocks.prepare_conv_block(x.shape[1:], 3, blocks.ConvSpec((3, 3), **kw),
                                     (blocks.PoolSpec((2, 2), (2, 2)), "relu"),
                                     dtype) is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_inputs_take_im2col_in_the_backward(dtype):
    # The polyphase backward would multiply the zeros around the phases by an inf;
    # im2col's sums hold only the products that contain it, as the twin's do.
    x, w, b = random_problem(np.random.default_rng(5), 2, 2, 3, (9, 10), (3, 3), dtype)
    kw = dict(stride=2, padding="same")
    x[1, 0, 4, 4] = np.inf
    grad_y = np.ones(ops.conv(x, w, b, **kw).shape, dtype=dtype)
    with np.errstate(invalid="ignore"):
        expected = ref.conv_backward_ref(grad_y, x, w, **kw)
    for got, exp in zip(ops.conv_backward(grad_y, x, w, **kw), expected):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(exp))
        finite = np.isfinite(exp)
        np.testing.assert_allclose(got[finite], exp[finite], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------
# The fused block: a strided convolution, 2x2 max or min pooling, relu
# ---------------------------------------------------------------------------------
FUSED_GEOMETRIES = [g for g in GEOMETRIES if len(g[2]) == 2
                    and min(ops.conv_output_shape(g[2], g[4], **g[5])) >= 2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode,relu", [("max", False), ("min", False), ("max", True),
                                       ("min", True)])
@pytest.mark.parametrize("integers", [False, True])  # ties in the windows
@pytest.mark.parametrize("n,c,in_shape,d,kernel,kw", FUSED_GEOMETRIES)
def test_fused_block_is_bitwise_the_ops(dtype, mode, relu, integers, n, c, in_shape, d,
                                        kernel, kw):
    x, w, b = random_problem(np.random.default_rng(6), n, c, d, in_shape, kernel,
                             np.float64)
    if integers:
        x, w, b = np.round(x), np.round(w), np.round(b)
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    assert blocks._conv_pool_supported(x.shape[1:], kernel, **kw)
    check_fused_equals_unfused(x, w, b, mode, relu=relu, n_jobs=2, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fused_block_with_non_finite_values_is_the_ops(dtype, bad):
    x, w, b = random_problem(np.random.default_rng(7), 3, 2, 4, (12, 13), (3, 3), dtype)
    x[1, 1, 5, 6] = bad
    check_fused_equals_unfused(x, w, b, "max", relu=True, stride=2, padding="same")


def test_prepared_block_for_a_strided_convolution():
    conv = blocks.ConvSpec((5, 5), stride=2, padding="same")
    block = blocks.prepare_conv_block((1, 28, 28), 6, conv,
                                      (blocks.PoolSpec((2, 2), (2, 2)), "relu"))
    assert type(block) is blocks.ConvPool2x2Block
    assert block.output_shape == (6, 7, 7)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    w = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    y = block.forward(x, w, b, 2, training=True)
    expected = np.maximum(ops.pool(ops.conv(x, w, b, stride=2, padding="same"), 2), 0)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(block.forward(x, w, b, 1, training=False), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kwargs", [((1, 16, 16), dict(stride=2)),
                                          ((3, 18, 17), dict(stride=2, kernel_size=3,
                                                             pooling="min"))])
def test_network_with_strided_blocks_is_bitwise_the_layer_by_layer_one(dtype, shape,
                                                                       kwargs):
    # The network fuses each strided conv with its pooling and relu; a few training
    # steps and inference must match running every layer on its own, bit for bit.
    fused_net = build_lenet5(shape, 4, **kwargs)
    plain = Network(copy.deepcopy(fused_net.layers), fuse=False)
    fused_net.initialize(shape, np.random.RandomState(0), dtype)
    plain.initialize(shape, np.random.RandomState(0), dtype)
    plain.set_state(fused_net.get_state())
    assert any(len(step.layers) == 3 for step in fused_net.steps)
    rng = np.random.RandomState(9)
    for _ in range(2):
        x = rng.randint(-2, 3, size=(7,) + shape).astype(dtype)
        outputs = []
        for net, n_threads in ((fused_net, 2), (plain, 1)):
            logits = net.forward(x, n_threads, training=True)
            net.backward(np.ones_like(logits) / logits.size, n_threads)
            outputs.append((logits, [g.copy() for g in net.grads]))
        np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
        for got, exp in zip(outputs[0][1], outputs[1][1]):
            np.testing.assert_array_equal(got, exp)
    x = rng.normal(size=(5,) + shape).astype(dtype)
    np.testing.assert_array_equal(fused_net.forward(x, 1), plain.forward(x, 1))
