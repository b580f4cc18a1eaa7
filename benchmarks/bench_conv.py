"""Convolution forward and backward: skconv against PyTorch on the same thread count.

Usage::

    python benchmarks/bench_conv.py [--threads 1 2] [--repeats 15] [--dtype float32]

For each shape and thread count it prints the median time of the forward pass and of
the backward pass (gradients with respect to x, w and b), the GFLOP/s of skconv, and
when PyTorch is installed the ratio torch_time / skconv_time (> 1 means skconv is
faster). PyTorch's backward is ``autograd`` on ``conv2d`` with all three gradients.
Runs alternate between the two libraries so that drifts in machine load hit both.
"""

import argparse
import os
import statistics
import time

import numpy as np
from _timing import median_of_inner, median_time, optional_torch

from skconv import ops

SHAPES = [
    # name, N, C, H, W, D, kh, kw, padding
    ("lenet5-conv1", 64, 1, 28, 28, 6, 5, 5, "same"),
    ("lenet5-conv2", 64, 6, 14, 14, 16, 5, 5, "same"),
    ("large-3x3", 64, 64, 32, 32, 64, 3, 3, 1),
]


def _torch_functions(torch, x, w, b, grad_y, padding):
    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(w).requires_grad_(True)
    bt = torch.from_numpy(b).requires_grad_(True)
    gt = torch.from_numpy(grad_y)

    def forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, wt, bt, padding=padding)

    def backward():
        # Forward under autograd is part of what a training step pays for the graph;
        # time only the backward by building the graph outside the timed region.
        xt.grad = wt.grad = bt.grad = None
        y = torch.nn.functional.conv2d(xt, wt, bt, padding=padding)
        start = time.perf_counter()
        y.backward(gt)
        return time.perf_counter() - start

    return forward, backward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)

    torch = optional_torch()

    rng = np.random.default_rng(0)
    header = (
        f"{'shape':<14} {'thr':>3} {'fwd ms':>8} {'GFLOP/s':>8} {'torch':>8} {'ratio':>6}"
        f" | {'bwd ms':>8} {'GFLOP/s':>8} {'torch':>8} {'ratio':>6}"
    )
    print(
        f"dtype {args.dtype}, median of 3 rounds x {args.repeats} repeats; ratio = torch "
        f"time / skconv time (> 1: skconv faster); {len(os.sched_getaffinity(0))} usable "
        f"cores, load average {os.getloadavg()[0]:.2f}"
        + (f", torch {torch.__version__}" if torch is not None else "")
    )
    print(header)
    print("-" * len(header))
    for name, n, c, h, w_, d, kh, kw, padding in SHAPES:
        x = rng.standard_normal((n, c, h, w_)).astype(args.dtype)
        w = (rng.standard_normal((d, c, kh, kw)) / np.sqrt(c * kh * kw)).astype(args.dtype)
        b = rng.standard_normal(d).astype(args.dtype)
        out = ops.conv_output_shape((h, w_), (kh, kw), padding=padding)
        grad_y = rng.standard_normal((n, d) + out).astype(args.dtype)
        flops = 2.0 * n * d * c * kh * kw * out[0] * out[1]
        torch_padding = padding if isinstance(padding, int) else "same"
        for threads in args.threads:
            def sk_forward():
                ops.conv(x, w, b, padding=padding, n_jobs=threads)

            def sk_backward():
                ops.conv_backward(grad_y, x, w, padding=padding, n_jobs=threads)

            if torch is not None:
                torch.set_num_threads(threads)
                t_fwd_fn, t_bwd_fn = _torch_functions(torch, x, w, b, grad_y, torch_padding)
            fwd, bwd, t_fwd, t_bwd = [], [], [], []
            # Alternate libraries in rounds so that load drifts hit both.
            for _ in range(3):
                fwd.append(median_time(sk_forward, args.repeats))
                bwd.append(median_time(sk_backward, args.repeats))
                if torch is not None:
                    t_fwd.append(median_time(t_fwd_fn, args.repeats))
                    t_bwd.append(median_of_inner(t_bwd_fn, args.repeats))
            fwd, bwd = statistics.median(fwd), statistics.median(bwd)
            # Backward computes two GEMMs of the forward's size (grad_x and grad_w).
            row = (
                f"{name:<14} {threads:>3} {fwd * 1e3:8.3f} {flops / fwd / 1e9:8.2f} "
            )
            if torch is not None:
                t_fwd, t_bwd = statistics.median(t_fwd), statistics.median(t_bwd)
                row += f"{t_fwd * 1e3:8.3f} {t_fwd / fwd:6.2f}"
            else:
                row += f"{'-':>8} {'-':>6}"
            row += f" | {bwd * 1e3:8.3f} {2 * flops / bwd / 1e9:8.2f} "
            if torch is not None:
                row += f"{t_bwd * 1e3:8.3f} {t_bwd / bwd:6.2f}"
            else:
                row += f"{'-':>8} {'-':>6}"
            print(row, flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
