"""Issue 14 research with today's skconv: the features it can already express.

Runs ``ConvNetClassifier(**params)`` with an update budget emulated from outside:
``max_iter = max(epochs, ceil(min_updates / minibatches_per_epoch))`` and, when
``min_updates`` is given, ``n_iter_no_change = max_iter`` (no early stop), which is the
rule proposed for the engine. A global-pooling head is expressed with the current API
as a last pooling window larger than the map (the window is clipped to the axis), e.g.
``pool_size=(2, 2, 100000), pooling=('max', 'max', 'avg')``. One JSON line per run goes
to ``--out`` (the torch prototype's format).

Example::

    python benchmarks/research_issue14_skconv.py --data GunPoint --seeds 0 1 \\
        --name wide --params '{"filters": [16, 32, 64], "kernel_size": 7}' \\
        --min-updates 2000 --out runs.jsonl
"""

import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_learning as bl  # noqa: E402


def _to_tuples(value):
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value


def main():
    from skconv import ConvNetClassifier

    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--params", action="append", required=True)
    p.add_argument("--name", action="append", required=True)
    p.add_argument("--min-updates", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    for data_name in args.data:
        if data_name.startswith("digits"):
            def get(seed, scaled=data_name == "digits_16"):
                return bl.load_digits_split(seed, scaled)
        else:
            split = bl.load_ucr(data_name)
            def get(seed, split=split):
                return split
        for name, text in zip(args.name, args.params):
            params = {k: _to_tuples(v) for k, v in json.loads(text).items()}
            accs = []
            for seed in args.seeds:
                X_train, X_test, y_train, y_test = get(seed)
                X_train = X_train.astype(np.float32)
                X_test = X_test.astype(np.float32)
                kw = dict(params)
                if args.min_updates:
                    bpe = math.ceil(len(X_train) / min(kw.get("batch_size", 64),
                                                       len(X_train)))
                    kw["max_iter"] = max(kw.get("max_iter", 100),
                                         math.ceil(args.min_updates / bpe))
                    kw["n_iter_no_change"] = kw["max_iter"]
                clf = ConvNetClassifier(random_state=seed, n_jobs=args.threads, **kw)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    clf.fit(X_train, y_train)
                fit_s = time.perf_counter() - start
                acc = float(np.mean(clf.predict(X_test) == y_test))
                accs.append(acc)
                rec = {"name": name, "data": data_name, "seed": seed, "acc": acc,
                       "fit_s": round(fit_s, 2), "epochs": clf.n_iter_,
                       "updates": None, "s_per_epoch": round(fit_s / clf.n_iter_, 4),
                       "config": {"skconv": json.loads(text),
                                  "min_updates": args.min_updates}}
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            print(f"{data_name:22s} {name:34s} mean={np.mean(accs):.4f} "
                  f"{' '.join(f'{a:.4f}' for a in accs)}", flush=True)


if __name__ == "__main__":
    main()
