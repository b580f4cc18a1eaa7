"""Slow, obvious twin of the pooling kernels, used only by the tests.

Plain Python loops over windows and cells, written from the contract in DESIGN.md and
sharing no code with ``skconv``: its own padding rule, output size and window
clipping. Works on ``(N, C, *spatial)`` arrays with any number of spatial axes.
"""

import itertools
import math

import numpy as np


def pads_for(padding, in_shape, window, stride):
    """Per-axis (low, high) padding, TensorFlow's rule for 'same'."""
    n_axes = len(in_shape)
    if padding == "valid":
        return [(0, 0)] * n_axes
    if padding == "same":
        pads = []
        for size, k, s in zip(in_shape, window, stride):
            out = math.ceil(size / s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, int):
        return [(padding, padding)] * n_axes
    return [(p, p) for p in padding]


def _tuple(value, n_axes):
    return (value,) * n_axes if isinstance(value, int) else tuple(value)


def geometry(in_shape, pool_size, stride=None, padding=0):
    """(window, stride, pads, out_shape), or None when some window has no real cell."""
    n_axes = len(in_shape)
    window = _tuple(pool_size, n_axes)
    stride = window if stride is None else _tuple(stride, n_axes)
    pads = pads_for(padding, in_shape, window, stride)
    out_shape = tuple(
        (size + lo + hi - k) // s + 1
        for size, k, s, (lo, hi) in zip(in_shape, window, stride, pads)
    )
    if any(o < 1 for o in out_shape):
        return None
    for o in itertools.product(*(range(n) for n in out_shape)):
        if not _window_cells(o, in_shape, window, stride, pads):
            return None
    return window, stride, pads, out_shape


def _window_cells(o, in_shape, window, stride, pads):
    """Real cells of window ``o``, in row-major order."""
    ranges = []
    for j, size, k, s, (lo, _) in zip(o, in_shape, window, stride, pads):
        start = j * s - lo
        ranges.append([i for i in range(start, start + k) if 0 <= i < size])
    return list(itertools.product(*ranges))


def _first_extreme(plane, cells, mode):
    """Cell of the first max (min) in row-major order; the first NaN if there is one."""
    for cell in cells:
        if np.isnan(plane[cell]):
            return cell
    values = [plane[cell] for cell in cells]
    target = max(values) if mode == "max" else min(values)
    return cells[values.index(target)]


def pool(x, pool_size, stride=None, padding=0, mode="max"):
    """Forward pooling, float64 arithmetic, result in x's dtype."""
    in_shape = x.shape[2:]
    window, stride, pads, out_shape = geometry(in_shape, pool_size, stride, padding)
    y = np.zeros(x.shape[:2] + out_shape, dtype=np.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane = x[n, c]
            for o in itertools.product(*(range(m) for m in out_shape)):
                cells = _window_cells(o, in_shape, window, stride, pads)
                if mode == "avg":
                    y[(n, c) + o] = sum(float(plane[cell]) for cell in cells) / len(cells)
                else:
                    y[(n, c) + o] = plane[_first_extreme(plane, cells, mode)]
    return y.astype(x.dtype)


def pool_backward(grad_y, x, pool_size, stride=None, padding=0, mode="max"):
    """Gradient of ``pool`` with respect to x, float64 arithmetic."""
    in_shape = x.shape[2:]
    window, stride, pads, out_shape = geometry(in_shape, pool_size, stride, padding)
    grad_x = np.zeros(x.shape, dtype=np.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane = x[n, c]
            for o in itertools.product(*(range(m) for m in out_shape)):
                cells = _window_cells(o, in_shape, window, stride, pads)
                g = float(grad_y[(n, c) + o])
                if mode == "avg":
                    for cell in cells:
                        grad_x[(n, c) + cell] += g / len(cells)
                else:
                    grad_x[(n, c) + _first_extreme(plane, cells, mode)] += g
    return grad_x


def global_pool(x, mode="avg"):
    """(N, C, *spatial) -> (N, C)."""
    return pool(x, x.shape[2:], mode=mode).reshape(x.shape[:2])


def global_pool_backward(grad_y, x, mode="avg"):
    grad_y = np.asarray(grad_y).reshape(x.shape[:2] + (1,) * (x.ndim - 2))
    return pool_backward(grad_y, x, x.shape[2:], mode=mode)
