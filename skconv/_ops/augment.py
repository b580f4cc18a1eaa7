"""Training-time augmentation ops: samples moved by whole cells along their spatial
axes (a crop of the zero-padded sample: "pad and random crop" for images, a random
delay for signals), optionally mirrored along the last axis, and the gradient of
that map. One compiled pass of copies (``skconv._kernels.augment``): the values are
the input's, bit for bit, whatever the thread count.
"""

import numpy as np

from .._kernels import augment as _kernel
from .threads import effective_n_threads, threads_for_cells
from .validation import check_out, contiguous

__all__ = ["move_samples"]


def move_samples(x, moves, *, inverse=False, n_jobs=None, out=None):
    """Move every sample of ``x`` by its row of ``moves``.

    Parameters
    ----------
    x : ndarray of shape (N, C, *spatial), 1 to 3 spatial axes, float32 or float64
    moves : array-like of int of shape (N, len(spatial) + 1)
        Per sample, the shift along each spatial axis (cell ``i`` of the result is
        cell ``i - d`` of the sample, zeros beyond the edge), then 1 to mirror the
        last axis before shifting (cell ``k`` reads ``size - 1 - (k - d)``), else 0.
    inverse : bool, default=False
        Apply the adjoint map (the gradient of the move, for the backward pass).
    n_jobs : int, default=None
    out : ndarray, default=None
        Where to write the result (the shape and dtype of ``x``, not ``x`` itself).

    Returns
    -------
    y : ndarray, the shape and dtype of ``x``
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64) or not 3 <= x.ndim <= 5:
        raise TypeError(f"x must be a float32 or float64 array of shape (N, C, *spatial) "
                        f"with 1 to 3 spatial axes, got {x.dtype} of shape {x.shape}")
    x = contiguous(x, x.dtype)
    n_axes = x.ndim - 2
    moves = np.asarray(moves)
    if (moves.shape != (x.shape[0], n_axes + 1)
            or (moves.size and moves.dtype.kind not in "iu")):
        raise ValueError(f"moves must be an int array of shape ({x.shape[0]}, "
                         f"{n_axes + 1}) (a shift per spatial axis, then the flip), got "
                         f"{moves.dtype} of shape {moves.shape}")
    y = np.empty_like(x) if out is None else check_out(out, x.shape, x.dtype, "out", (x,))
    # As (N, C, D, H, W): leading singleton axes, whose shifts are 0.
    full = np.zeros((x.shape[0], 4), dtype=np.intp)
    full[:, 3 - n_axes:3] = moves[:, :n_axes]
    full[:, 3] = moves[:, n_axes] != 0
    shape5 = x.shape[:2] + (1,) * (3 - n_axes) + x.shape[2:]
    if x.shape[0]:
        _kernel.move_samples(x.reshape(shape5), full, bool(inverse), y.reshape(shape5),
                             max(1, min(threads_for_cells(effective_n_threads(n_jobs),
                                                          x.size), x.shape[0])))
    return y
