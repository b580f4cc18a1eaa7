"""Timing helpers shared by the benchmark scripts (not part of the package)."""

import statistics
import time

WARM_UP = 3


def median_time(fn, repeats):
    """Median wall time of ``fn()`` over ``repeats`` calls, after a warm-up.

    The warm-up pays for first touches of buffers and the OpenMP team start.
    """
    for _ in range(WARM_UP):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_of_inner(fn, repeats):
    """Median of the times that ``fn`` measures and returns itself (excluding its set-up)."""
    for _ in range(WARM_UP):
        fn()
    return statistics.median(fn() for _ in range(repeats))


def optional_torch():
    """The torch module, or None (with a note) when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: skconv timings only")
        return None
    return torch
