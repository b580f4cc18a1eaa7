"""What an MNIST-size training epoch of ``ConvNetClassifier`` costs, against another
source tree of skconv (the round's starting code, say).

Each run is one process: ``ConvNetClassifier(**params).fit(X, y)`` for ``--epochs``
epochs (``max_iter``, no early stop) on 60,000 28x28 float32 images with 10 classes,
``n_jobs=--threads``; it prints the seconds per epoch of the fit. The images are
Fashion-MNIST's training set (``--data fashion``, pixels / 255; Debian's
``dataset-fashion-mnist``, the shape of MNIST) or random values in [0, 1) with random
labels (``--data random``). Use real images to judge a cost: on random labels a
plain network's float32 values drift towards the subnormal range, whose arithmetic
is many times slower, so the random data can make a plain network look slower than
one with batch normalisation.
The trees (``--tree LABEL=PATH``, each put first on ``PYTHONPATH``; ``.`` for this
checkout) and their parameters (``--params LABEL=JSON``, ``{}`` by default) run
alternately, ``--runs`` times, and the table gives the median per epoch and its ratio
to the first tree's, run by run. The classifier's 'auto' options see the whole fit's
budget: 5 epochs of 60,000 images plan 4,690 updates, above the 4,000 from which
images train with batch norm, a higher rate and shifts (``auto_options_``), so the
default row is what ``ConvNetClassifier()`` costs on MNIST.

    python benchmarks/bench_epoch_cost.py --tree start=/path/to/old/tree --tree now=.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time, warnings
import numpy as np
from skconv import ConvNetClassifier
params, epochs, threads = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if sys.argv[4] == "random":
    rng = np.random.default_rng(0)
    X = rng.random((60000, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 60000)
else:
    from skconv.datasets import load_mnist
    X, y = load_mnist(sys.argv[4], "train")
    X = (X.astype(np.float32) / 255)[:, None]
clf = ConvNetClassifier(max_iter=epochs, tol=0.0, n_iter_no_change=10**6,
                        random_state=0, n_jobs=threads, **params)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    clf.fit(X, y)
print(json.dumps({"per_epoch": (time.perf_counter() - start) / clf.n_iter_,
                  "auto": {k: str(v) for k, v in getattr(clf, "auto_options_", {}).items()}}))
"""


def run(tree, params, epochs, threads, data):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(params), str(epochs),
                          str(threads), data], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True,
                        help="LABEL=PATH of a source tree with built kernels")
    parser.add_argument("--params", action="append", default=[],
                        help="LABEL=JSON of ConvNetClassifier arguments for that tree")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", choices=["fashion", "random"], default="fashion")
    parser.add_argument("--fashion-path", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args(argv)
    trees = dict(item.split("=", 1) for item in args.tree)
    params = {label: {} for label in trees}
    params.update({label: json.loads(text) for label, text in
                   (item.split("=", 1) for item in args.params)})
    times = {label: [] for label in trees}
    autos = {}
    for _ in range(args.runs):
        for label, tree in trees.items():
            result = run(tree, params[label], args.epochs, args.threads,
                         args.fashion_path if args.data == "fashion" else "random")
            times[label].append(result["per_epoch"])
            autos[label] = result["auto"]
    first = next(iter(trees))
    print(f"{args.epochs} epochs of 60,000 28x28 images ({args.data}), "
          f"{args.threads} thread(s), {args.runs} alternating runs")
    print("| tree | params | s per epoch (median) | x the first, run by run |")
    print("|---|---|---|---|")
    for label in trees:
        ratios = ", ".join(f"{t / f:.2f}" for t, f in zip(times[label], times[first]))
        print(f"| {label} | {json.dumps(params[label])} | "
              f"{statistics.median(times[label]):.3f} | {ratios} |")
    for label, auto in autos.items():
        print(f"# {label} auto_options_: {auto}")


if __name__ == "__main__":
    main()
