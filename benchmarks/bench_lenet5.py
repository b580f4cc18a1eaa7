"""LeNet-5 training and inference throughput: skconv against PyTorch (and MLPClassifier).

Usage::

    python benchmarks/bench_lenet5.py [--threads 1 2] [--batch-size 64] [--image-size 28]
        [--samples 6000] [--epochs 2] [--runs 3] [--plot docs/lenet5_throughput.png]

Both libraries train the same network - conv(6, 5x5, 'same') -> relu -> maxpool 2 ->
conv(16, 5x5, 'same') -> relu -> maxpool 2 -> dense 120 -> relu -> dense 84 -> relu ->
dense 10 - with Adam (learning rate 1e-3, L2 1e-4 on the weights as scikit-learn scales
it) on the same synthetic MNIST-shaped data (float32 images in [0, 1], 10 classes),
shuffled every epoch, at the same batch size and thread count
(``torch.set_num_threads``). Each measurement runs in a fresh process, the libraries
alternate, and the table shows the median of ``--runs`` runs:

- training images/s: ``ConvNetClassifier(...).fit`` on ``--samples`` images for
  ``--epochs`` epochs (skconv) and the equivalent minibatch loop (PyTorch);
- inference images/s: ``predict_proba`` on 10,000 images, 512 at a time for both;
- a reference row: ``MLPClassifier(hidden_layer_sizes=(100,))`` training speed.

``--plot PATH`` also measures training throughput at batch sizes 16, 64 and 256 and
saves it as a PNG (needs matplotlib). ``--memory`` instead measures the peak RSS of
one epoch of ``fit`` on 60,000 images (whole process, data included).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from _torch_lenet import torch_lenet5

INFERENCE_SAMPLES = 10_000
PREDICT_BATCH = 512


def synthetic_images(n_samples, image_size, seed=0):
    """MNIST-shaped data: a noisy class-dependent blob pattern per image, in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n_samples)
    grid = np.linspace(-1, 1, image_size)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    centres = rng.uniform(-0.6, 0.6, size=(10, 2))
    templates = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 0.1)
    templates = (templates / 1.3).astype(np.float32)
    # Filled in chunks, in float32: the memory benchmark measures fit, not this.
    X = np.empty((n_samples, image_size * image_size), dtype=np.float32)
    for start in range(0, n_samples, 4096):
        stop = min(start + 4096, n_samples)
        noise = rng.random((stop - start, image_size * image_size), dtype=np.float32)
        X[start:stop] = templates[y[start:stop]].reshape(stop - start, -1) + noise * np.float32(0.3 / 1.3)
    return X, y


# ------------------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON line
# ------------------------------------------------------------------------------------


def worker_skconv(args):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from skconv import ConvNetClassifier

    X, y = synthetic_images(args.samples, args.image_size)
    clf = ConvNetClassifier(
        batch_size=args.batch_size, max_iter=args.epochs, n_iter_no_change=10**9,
        tol=0.0, random_state=0, n_jobs=args.threads,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X, y)
        train = time.perf_counter() - start
    X_test, _ = synthetic_images(INFERENCE_SAMPLES, args.image_size, seed=1)
    clf.predict_proba(X_test[:PREDICT_BATCH])  # warm-up
    start = time.perf_counter()
    clf.predict_proba(X_test)
    infer = time.perf_counter() - start
    return {"train": args.samples * args.epochs / train, "infer": INFERENCE_SAMPLES / infer}


def worker_torch(args):
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    X, y = synthetic_images(args.samples, args.image_size)
    s = args.image_size
    net = torch_lenet5(s)
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    # scikit-learn's L2: loss += alpha / (2 * batch) * ||W||^2, i.e. grad += alpha/batch W.
    optimizer = torch.optim.Adam(
        [{"params": weights, "weight_decay": 1e-4 / args.batch_size},
         {"params": biases, "weight_decay": 0.0}],
        lr=1e-3,
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    X_t = torch.from_numpy(X.reshape(-1, 1, s, s))
    y_t = torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(args.samples, generator=generator)
        for first in range(0, args.samples, args.batch_size):
            idx = order[first:first + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(X_t[idx]), y_t[idx])
            loss.backward()
            optimizer.step()
    train = time.perf_counter() - start
    X_test, _ = synthetic_images(INFERENCE_SAMPLES, s, seed=1)
    X_test = torch.from_numpy(X_test.reshape(-1, 1, s, s))
    with torch.no_grad():
        torch.softmax(net(X_test[:PREDICT_BATCH]), dim=1)  # warm-up
        start = time.perf_counter()
        for first in range(0, INFERENCE_SAMPLES, PREDICT_BATCH):
            torch.softmax(net(X_test[first:first + PREDICT_BATCH]), dim=1)
        infer = time.perf_counter() - start
    return {"train": args.samples * args.epochs / train, "infer": INFERENCE_SAMPLES / infer}


def worker_mlp(args):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from threadpoolctl import threadpool_limits

    X, y = synthetic_images(args.samples, args.image_size)
    clf = MLPClassifier(
        hidden_layer_sizes=(100,), batch_size=args.batch_size, max_iter=args.epochs,
        n_iter_no_change=10**9, tol=0.0, random_state=0,
    )
    with threadpool_limits(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X, y)
        train = time.perf_counter() - start
    return {"train": args.samples * args.epochs / train, "infer": float("nan")}


def worker_memory(args):
    """Peak RSS of one epoch of ``fit`` on ``args.samples`` images, against the data."""
    import resource
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from skconv import ConvNetClassifier

    X, y = synthetic_images(args.samples, args.image_size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    clf = ConvNetClassifier(batch_size=args.batch_size, max_iter=1, random_state=0,
                            n_jobs=args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"data": X.nbytes, "before": before, "peak": peak}


WORKERS = {"skconv": worker_skconv, "torch": worker_torch, "mlp": worker_mlp,
           "memory": worker_memory}


def run_worker(name, threads, batch_size, args):
    """Run one measurement in a fresh process; None if that library is missing."""
    command = [
        sys.executable, os.path.abspath(__file__), "--worker", name,
        "--threads", str(threads), "--batch-size", str(batch_size),
        "--image-size", str(args.image_size), "--samples", str(args.samples),
        "--epochs", str(args.epochs),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        if "ModuleNotFoundError" in result.stderr:
            return None
        raise RuntimeError(f"{name} worker failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(threads, batch_size, args, libraries):
    """Median images/s per library over ``args.runs`` alternating runs."""
    runs = {name: [] for name in libraries}
    for _ in range(args.runs):
        for name in libraries:
            runs[name].append(run_worker(name, threads, batch_size, args))
    medians = {}
    for name, results in runs.items():
        if any(r is None for r in results):
            medians[name] = None
            continue
        medians[name] = {key: statistics.median(r[key] for r in results)
                         for key in ("train", "infer")}
    return medians


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plot", metavar="PATH", help="also plot throughput vs batch size")
    parser.add_argument("--memory", action="store_true",
                        help="only measure the peak RSS of one epoch of fit on 60,000 images")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        args.threads = args.threads[0]
        print(json.dumps(WORKERS[args.worker](args)))
        return

    if args.memory:
        args.samples, args.epochs = 60_000, 1
        result = run_worker("memory", args.threads[0], args.batch_size, args)
        mib = 2**20
        budget = 2 * result["data"] + 150 * mib
        print(f"fit on 60,000 {args.image_size}x{args.image_size} float32 images: data "
              f"{result['data'] / mib:.0f} MiB, peak RSS {result['peak'] / mib:.0f} MiB "
              f"(before fit {result['before'] / mib:.0f} MiB); target <= 2 x data + 150 "
              f"MiB = {budget / mib:.0f} MiB: {'met' if result['peak'] <= budget else 'MISSED'}")
        return

    print(
        f"LeNet-5 on {args.samples} synthetic {args.image_size}x{args.image_size} images, "
        f"{args.epochs} epochs, batch {args.batch_size}, Adam; inference on "
        f"{INFERENCE_SAMPLES} images; median of {args.runs} runs, each in its own "
        f"process; {len(os.sched_getaffinity(0))} usable cores, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    header = (f"{'threads':>7} | {'train img/s':>11} {'torch':>9} {'ratio':>6} | "
              f"{'infer img/s':>11} {'torch':>9} {'ratio':>6} | {'MLP train img/s':>15}")
    print(header)
    print("-" * len(header))
    for threads in args.threads:
        med = measure(threads, args.batch_size, args, ["skconv", "torch", "mlp"])
        sk, th, mlp = med["skconv"], med["torch"], med["mlp"]
        row = f"{threads:>7} | {sk['train']:11.0f} "
        row += (f"{th['train']:9.0f} {sk['train'] / th['train']:6.2f} | " if th
                else f"{'-':>9} {'-':>6} | ")
        row += f"{sk['infer']:11.0f} "
        row += (f"{th['infer']:9.0f} {sk['infer'] / th['infer']:6.2f} | " if th
                else f"{'-':>9} {'-':>6} | ")
        row += f"{mlp['train']:15.0f}"
        print(row, flush=True)
    print("ratio = skconv images/s / PyTorch images/s (> 1: skconv is faster); "
          f"load average at the end: {os.getloadavg()[0]:.2f}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        batch_sizes = [16, 64, 256]
        fig, ax = plt.subplots(figsize=(6, 4))
        for threads in args.threads:
            curves = {"skconv": [], "torch": []}
            for batch_size in batch_sizes:
                med = measure(threads, batch_size, args, ["skconv", "torch"])
                for name in curves:
                    curves[name].append(med[name]["train"] if med[name] else np.nan)
            for name, style in (("skconv", "-o"), ("torch", "--s")):
                ax.plot(batch_sizes, curves[name], style, label=f"{name}, {threads} thread(s)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel("training images / s")
        ax.set_title(f"LeNet-5 training throughput ({args.image_size}x{args.image_size})")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"saved {args.plot}")


if __name__ == "__main__":
    main()
