"""Slow, obvious numpy twin of ``skconv.ops.conv`` / ``conv_backward``. Tests only.

Everything here is written from the definition, independently of ``skconv``:

- padding is explicit zero padding with ``np.pad``;
- the forward pass loops over every output position and takes the sum of the
  elementwise product of the (strided, dilated) input patch and each kernel
  (cross-correlation, no kernel flip; ``tensordot`` only sums over channels and
  kernel cells, for all samples and filters at once);
- the backward pass loops over the same output positions and, for each, adds
  ``grad_y[position] * patch`` to the weight gradient and ``grad_y[position] * w``
  back onto the padded input patch; the input gradient is the centre of the padded
  gradient (the padding cells are dropped).

All arithmetic is in float64 whatever the input dtype.
"""

import numpy as np


def same_padding(in_shape, kernel_shape, stride, dilation):
    """TensorFlow's 'same' rule: ``out = ceil(in / s)``, the odd extra cell at the end."""
    pads = []
    for size, k, s, d in zip(in_shape, kernel_shape, stride, dilation):
        out = -(-size // s)
        extent = d * (k - 1) + 1
        total = max((out - 1) * s + extent - size, 0)
        lo = total // 2
        pads.append((lo, total - lo))
    return pads


def expand(value, n_axes):
    """An int or per-axis sequence as a tuple of ``n_axes`` ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n_axes
    value = tuple(int(v) for v in value)
    assert len(value) == n_axes
    return value


def resolve_padding(padding, in_shape, kernel_shape, stride, dilation):
    """Per-axis ``(lo, hi)`` zero padding for int / tuple / 'valid' / 'same'."""
    n_axes = len(in_shape)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * n_axes
        if padding == "same":
            return same_padding(in_shape, kernel_shape, stride, dilation)
        raise ValueError(padding)
    return [(p, p) for p in expand(padding, n_axes)]


def output_size(size, k, s, lo, hi, d):
    """Number of window positions that fit in the padded axis (<= 0 if none)."""
    padded = size + lo + hi
    extent = d * (k - 1) + 1
    if extent > padded:
        return 0
    # Count positions 0, s, 2s, ... whose window end stays inside the padded axis.
    count = 0
    start = 0
    while start + extent <= padded:
        count += 1
        start += s
    return count


def _geometry(x, w, stride, padding, dilation):
    n_axes = x.ndim - 2
    stride = expand(stride, n_axes)
    dilation = expand(dilation, n_axes)
    pads = resolve_padding(padding, x.shape[2:], w.shape[2:], stride, dilation)
    out = tuple(
        output_size(size, k, s, lo, hi, d)
        for size, k, s, (lo, hi), d in zip(x.shape[2:], w.shape[2:], stride, pads, dilation)
    )
    return stride, dilation, pads, out


def _patch_index(position, kernel_shape, stride, dilation):
    """Slices of the padded input under the kernel for one output position."""
    return tuple(
        slice(o * s, o * s + d * (k - 1) + 1, d)
        for o, k, s, d in zip(position, kernel_shape, stride, dilation)
    )


def conv_ref(x, w, b=None, *, stride=1, padding=0, dilation=1):
    """Reference forward pass. Returns float64 ``(N, D, *out)``."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    stride, dilation, pads, out = _geometry(x, w, stride, padding, dilation)
    x_pad = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads])
    y = np.zeros((x.shape[0], w.shape[0]) + out)
    axes = tuple(range(1, x.ndim))  # channel and kernel axes
    for position in np.ndindex(*out):
        index = (slice(None), slice(None)) + _patch_index(position, w.shape[2:], stride, dilation)
        patch = x_pad[index]
        # y[n, d, position] = sum over (c, k...) of patch[n, c, k...] * w[d, c, k...]
        y[(slice(None), slice(None)) + position] = np.tensordot(patch, w, axes=(axes, axes))
    if b is not None:
        b = np.asarray(b, dtype=np.float64)
        y += b.reshape((1, w.shape[0]) + (1,) * len(out))
    return y


def conv_backward_ref(grad_y, x, w, *, stride=1, padding=0, dilation=1):
    """Reference gradients ``(grad_x, grad_w, grad_b)`` of ``sum(conv_ref(...) * grad_y)``."""
    grad_y = np.asarray(grad_y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    stride, dilation, pads, out = _geometry(x, w, stride, padding, dilation)
    assert grad_y.shape == x.shape[:1] + w.shape[:1] + out, (grad_y.shape, out)
    x_pad = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads])
    grad_x_pad = np.zeros_like(x_pad)
    grad_w = np.zeros_like(w)
    for position in np.ndindex(*out):
        index = (slice(None), slice(None)) + _patch_index(position, w.shape[2:], stride, dilation)
        patch = x_pad[index]
        grad_patch = grad_x_pad[index]  # a view: writes land in grad_x_pad
        g = grad_y[(slice(None), slice(None)) + position]  # (N, D)
        # grad_w[d] += sum_n g[n, d] * patch[n];  grad_patch[n] += sum_d g[n, d] * w[d]
        grad_w += np.tensordot(g, patch, axes=([0], [0]))
        grad_patch += np.tensordot(g, w, axes=([1], [0]))
    centre = (slice(None), slice(None)) + tuple(
        slice(lo, lo + size) for (lo, _), size in zip(pads, x.shape[2:])
    )
    grad_x = grad_x_pad[centre].copy()
    grad_b = grad_y.sum(axis=(0,) + tuple(range(2, grad_y.ndim)))
    return grad_x, grad_w, grad_b
