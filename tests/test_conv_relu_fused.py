"""The fused convolution + relu block (``skconv._ops.blocks.ConvReluBlock``): a
convolution of any dimension, stride, padding and dilation with the relu applied by
the kernel, against the two plain ops (``conv`` then ``numpy.maximum``; the relu's
backward then ``conv_backward``) bit for bit, and inside a network against the
layer-by-layer plan."""

import numpy as np
import pytest

from skconv._nn.lenet import build_lenet5
from skconv._ops import blocks
from skconv._ops import conv as conv_ops
from skconv._ops.blocks import ConvSpec, PoolSpec, prepare_conv_block
from skconv._ops.validation import to_3d, view_3d
from skconv.ops import conv, conv_backward

try:  # tests/ imported as a package or as a path
    from ._bitwise import assert_network_is_the_layer_by_layer_network
except ImportError:
    from _bitwise import assert_network_is_the_layer_by_layer_network

DTYPES = (np.float32, np.float64)


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


@pytest.mark.parametrize(
    "input_shape,conv_spec,following,expected",
    [
        ((1, 50), ConvSpec((5,), 1, "same"), ("relu",), blocks.ConvReluBlock),
        ((3, 9, 11), ConvSpec((3, 2), 2, 1, (1, 2)), ("relu",), blocks.ConvReluBlock),
        ((2, 5, 6, 7), ConvSpec((3, 3, 3), 1, "same"), ("relu",), blocks.ConvReluBlock),
        # relu then a pooling that no block fuses: the relu alone is fused
        ((1, 12, 12), ConvSpec((3, 3), 1, "same"),
         ("relu", PoolSpec((3, 3), (2, 2), 0, "avg")), None),
        ((1, 12, 12), ConvSpec((3, 3), 1, "same"), ("tanh",), None),
        ((1, 12, 12), ConvSpec((3, 3), 1, "same"), (), None),
        ((1, 12, 12), ConvSpec((3, 3), 1, "same"), ("relu", "relu"), None),
        ((1, 4, 4), ConvSpec((7, 7), 1, "valid"), ("relu",), None),  # kernel too large
    ],
)
def test_which_specs_get_the_block(input_shape, conv_spec, following, expected):
    for dtype in DTYPES:
        block = prepare_conv_block(input_shape, 4, conv_spec, following, dtype)
        assert type(block) is expected if expected else block is None
        if block is not None:
            x = np.zeros((1,) + input_shape, dtype)
            w = np.zeros((4, input_shape[0]) + conv_spec.kernel_shape, dtype)
            y = conv(x, w, stride=conv_spec.stride, padding=conv_spec.padding,
                     dilation=conv_spec.dilation)
            assert block.output_shape == y.shape[1:]
            assert "ConvReluBlock" in repr(block)


def _random_cases(n_cases, seed):
    """Convolutions of 1 to 3 spatial axes, strides 1-2, paddings, dilations, with and
    without bias; the shapes reach every path of the kernel (shifted rows, the
    signals' polyphase rows, im2col for strided maps whose copy would not fit)."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n_cases:
        n_axes = int(rng.integers(1, 4))
        spatial = tuple(int(s) for s in rng.integers(3, 12 if n_axes < 3 else 7,
                                                     n_axes))
        kernel = tuple(int(k) for k in rng.integers(1, 4, n_axes))
        stride = tuple(int(s) for s in rng.integers(1, 3, n_axes))
        dilation = tuple(int(d) for d in rng.integers(1, 3, n_axes))
        padding = ["same", "valid", int(rng.integers(0, 3))][int(rng.integers(0, 3))]
        channels, filters = int(rng.integers(1, 4)), int(rng.integers(1, 18))
        spec = ConvSpec(kernel, stride, padding, dilation)
        block = prepare_conv_block((channels,) + spatial, filters, spec, ("relu",),
                                   np.float32)
        if block is None:  # the dilated kernel does not fit the padded input
            continue
        cases.append(((channels,) + spatial, filters, spec, bool(rng.integers(0, 2))))
    return cases


# Strided images whose polyphase copy would span a huge dilation's padding take
# im2col and BLAS (tests/test_conv_strided.py), the relu then applied after the GEMM.
IM2COL_CASES = [((3, 5, 6), 2, ConvSpec((3, 3), 2, "same", (1, 2**12)), True),
                ((2, 4, 5, 3), 3, ConvSpec((1, 3, 1), 2, "same", (1, 2**12, 1)), False)]


def test_the_cases_reach_every_path_of_the_kernel():
    paths = set()
    for input_shape, filters, spec, _ in _random_cases(40, 0) + IM2COL_CASES:
        x = np.zeros((1,) + input_shape, np.float32)
        w = np.zeros((filters, input_shape[0]) + spec.kernel_shape, np.float32)
        y = conv(x, w, stride=spec.stride, padding=spec.padding, dilation=spec.dilation)
        stride, pads, dilation, _ = conv_ops._conv_geometry(
            input_shape[1:], spec.kernel_shape, spec.stride, spec.padding, spec.dilation)
        blas = conv_ops._uses_blas((view_3d(x), view_3d(w), view_3d(y)),
                                   to_3d(stride, 1), to_3d([lo for lo, _ in pads], 0),
                                   to_3d(dilation, 1))
        paths.add("im2col" if blas else "rows" if len(input_shape) == 2 else "shifted")
    assert paths == {"im2col", "rows", "shifted"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", _random_cases(40, 0) + IM2COL_CASES)
def test_block_is_the_two_plain_ops_bit_for_bit(case, dtype):
    input_shape, filters, spec, with_bias = case
    rng = np.random.default_rng(1)
    block = prepare_conv_block(input_shape, filters, spec, ("relu",), dtype)
    # Small integers: exact zeros and ties, and -0 sums (a zero input times a
    # negative weight) that relu must turn into +0 as numpy.maximum does.
    x = rng.integers(-2, 3, (5,) + input_shape).astype(dtype)
    x[0] = 0
    w = rng.integers(-2, 3, (filters, input_shape[0]) + spec.kernel_shape).astype(dtype)
    b = rng.integers(-2, 3, filters).astype(dtype) if with_bias else None
    kwargs = dict(stride=spec.stride, padding=spec.padding, dilation=spec.dilation)
    plain_y = np.maximum(conv(x, w, b, **kwargs), 0)
    grad_y = rng.normal(size=plain_y.shape).astype(dtype)
    expected = conv_backward(grad_y * (plain_y > 0), x, w, **kwargs)
    for n_threads in (1, 2):
        inferred = block.forward(x, w, b, n_threads, training=False)
        np.testing.assert_array_equal(_bits(inferred), _bits(plain_y))
        y = block.forward(x, w, b, n_threads, training=True)
        np.testing.assert_array_equal(_bits(y), _bits(plain_y))
        grad_w, grad_b = np.empty_like(w), np.empty(filters, dtype)
        grad_x = block.backward(grad_y, x, w, grad_w, grad_b, n_threads)
        for got, want in zip((grad_x, grad_w, grad_b), expected):
            np.testing.assert_array_equal(_bits(got), _bits(want))
        block.forward(x, w, b, n_threads, training=True)
        assert block.backward(grad_y, x, w, grad_w, grad_b, n_threads,
                              compute_grad_x=False) is None
        np.testing.assert_array_equal(_bits(grad_w), _bits(expected[1]))


def test_backward_needs_a_training_forward_and_the_output_shape():
    block = prepare_conv_block((1, 8, 8), 3, ConvSpec((3, 3), 1, "same"), ("relu",),
                               np.float32)
    x = np.ones((2, 1, 8, 8), np.float32)
    w = np.ones((3, 1, 3, 3), np.float32)
    grad_w, grad_b = np.empty_like(w), np.empty(3, np.float32)
    y = block.forward(x, w, None, 1, training=False)
    with pytest.raises(RuntimeError, match="backward needs a preceding forward"):
        block.backward(np.ones_like(y), x, w, grad_w, grad_b, 1)
    block.forward(x, w, None, 1, training=True)
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 3, 8, 8\)"):
        block.backward(np.ones((2, 3, 8, 7), np.float32), x, w, grad_w, grad_b, 1)
    with pytest.raises(ValueError, match="out is for inference"):
        block.forward(x, w, None, 1, training=True, out=np.empty_like(y))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,kwargs",
    [
        # Average poolings that no block fuses: conv, relu (fused), then the pooling.
        ((1, 14, 14), dict(kernel_size=3, pooling="avg", pool_size=3, pool_stride=2)),
        ((1, 6, 8, 8), dict(kernel_size=3, filters=(3, 4), pooling="avg")),
        ((2, 16, 18), dict(kernel_size=(3, 2), stride=2, pooling="avg", pool_size=3,
                           pool_stride=1)),
    ],
)
def test_network_with_conv_relu_blocks_is_the_layer_by_layer_network(shape, kwargs,
                                                                     dtype):
    net = build_lenet5(shape, 4, hidden_layer_sizes=(8,), **kwargs)
    assert assert_network_is_the_layer_by_layer_network(net, shape, dtype,
                                                        blocks.ConvReluBlock) == 2
