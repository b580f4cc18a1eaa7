"""Pooling forward and backward: skconv against PyTorch on the same thread count.

Usage::

    python benchmarks/bench_pool.py [--threads 1 2] [--repeats 25] [--dtype float32]

For each shape (window 2, stride 2), mode and thread count it prints the median time
of the forward pass, of the backward pass (gradient with respect to x) and of a whole
training step (forward then backward), and when PyTorch is installed its times and the
speed-up torch_time / skconv_time (> 1 means skconv is faster), as in bench_conv.py.

PyTorch runs ``max_pool2d`` / ``avg_pool2d`` (``*_pool1d`` on signals; forward
under ``no_grad``; backward is ``autograd`` on a graph built outside the timed region;
the step is forward with autograd plus backward). skconv's ``max`` backward is
:func:`skconv.ops.pool_backward`, which scans the windows of x again; the ``max-idx``
rows time the layer path instead: :func:`~skconv.ops.pool_with_indices` then
:func:`~skconv.ops.pool_backward_indices`, which is what PyTorch does. Runs alternate between the two libraries in rounds so that
drifts in machine load hit both.
"""

import argparse
import os
import statistics
import time

import numpy as np
from _timing import median_of_inner, median_time, optional_torch

from skconv import ops

SHAPES = [
    # name, (N, C, H, W) or, for signals, (N, C, L)
    ("lenet5-pool1", (64, 6, 28, 28)),
    ("lenet5-pool2", (64, 16, 14, 14)),
    ("large", (64, 64, 32, 32)),
    # The first pooling of the classifier's default network on signals of 1,000 steps.
    ("signal-1000", (64, 16, 1000)),
]
MODES = ["max", "max-idx", "avg"]
WINDOW = 2


def _skconv_functions(x, grad_y, mode, threads):
    """(forward, backward, step) closures for skconv."""
    if mode == "max-idx":
        _, indices = ops.pool_with_indices(x, WINDOW, n_jobs=threads)

        def forward():
            ops.pool_with_indices(x, WINDOW, n_jobs=threads)

        def backward():
            ops.pool_backward_indices(grad_y, indices, x.shape, n_jobs=threads)

        def step():
            _, idx = ops.pool_with_indices(x, WINDOW, n_jobs=threads)
            ops.pool_backward_indices(grad_y, idx, x.shape, n_jobs=threads)

        return forward, backward, step

    def forward():
        ops.pool(x, WINDOW, mode=mode, n_jobs=threads)

    def backward():
        ops.pool_backward(grad_y, x, WINDOW, mode=mode, n_jobs=threads)

    def step():
        ops.pool(x, WINDOW, mode=mode, n_jobs=threads)
        ops.pool_backward(grad_y, x, WINDOW, mode=mode, n_jobs=threads)

    return forward, backward, step


def _torch_functions(torch, x, grad_y, mode):
    """(forward, backward, step) closures for PyTorch; backward times itself."""
    F = torch.nn.functional
    n_axes = x.ndim - 2
    pool = getattr(F, f"{'avg' if mode == 'avg' else 'max'}_pool{n_axes}d")

    def op(t):
        return pool(t, WINDOW)
    xt = torch.from_numpy(x).requires_grad_(True)
    gt = torch.from_numpy(grad_y)

    def forward():
        with torch.no_grad():
            op(xt)

    def backward():
        y = op(xt)
        start = time.perf_counter()
        torch.autograd.grad(y, xt, gt)
        return time.perf_counter() - start

    def step():
        torch.autograd.grad(op(xt), xt, gt)

    return forward, backward, step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)

    torch = optional_torch()

    rng = np.random.default_rng(0)
    print(
        f"dtype {args.dtype}, window {WINDOW} stride {WINDOW}, median of {args.rounds} "
        f"rounds x {args.repeats} repeats; ratio = torch time / skconv time (> 1: skconv "
        f"faster); {len(os.sched_getaffinity(0))} usable cores, load average "
        f"{os.getloadavg()[0]:.2f}" + (f", torch {torch.__version__}" if torch else "")
    )
    header = (
        f"{'shape':<13} {'mode':<7} {'thr':>3} |"
        f" {'fwd ms':>8} {'torch':>8} {'ratio':>5} |"
        f" {'bwd ms':>8} {'torch':>8} {'ratio':>5} |"
        f" {'step ms':>8} {'torch':>8} {'ratio':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, shape in SHAPES:
        x = rng.standard_normal(shape).astype(args.dtype)
        out = ops.pool_output_shape(shape[2:], WINDOW)
        grad_y = rng.standard_normal(shape[:2] + out).astype(args.dtype)
        for mode in MODES:
            for threads in args.threads:
                sk = _skconv_functions(x, grad_y, "max" if mode == "max" else mode, threads)
                if torch is not None:
                    torch.set_num_threads(threads)
                    tt = _torch_functions(torch, x, grad_y, mode)
                times = {key: [] for key in ("sf", "sb", "ss", "tf", "tb", "ts")}
                for _ in range(args.rounds):
                    times["sf"].append(median_time(sk[0], args.repeats))
                    times["sb"].append(median_time(sk[1], args.repeats))
                    times["ss"].append(median_time(sk[2], args.repeats))
                    if torch is not None:
                        times["tf"].append(median_time(tt[0], args.repeats))
                        times["tb"].append(median_of_inner(tt[1], args.repeats))
                        times["ts"].append(median_time(tt[2], args.repeats))
                med = {k: statistics.median(v) if v else None for k, v in times.items()}
                row = f"{name:<13} {mode:<7} {threads:>3} |"
                for s_key, t_key in (("sf", "tf"), ("sb", "tb"), ("ss", "ts")):
                    row += f" {med[s_key] * 1e3:8.3f}"
                    if med[t_key] is None:
                        row += f" {'-':>8} {'-':>5} |"
                    else:
                        row += f" {med[t_key] * 1e3:8.3f} {med[t_key] / med[s_key]:5.2f} |"
                print(row.rstrip(" |"), flush=True)
    # Other processes on the cores make the medians (and the 2-thread rows most) noisy.
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
