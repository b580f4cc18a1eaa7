"""PyTorch prototypes of the learning-quality features of issue 14 (research only).

A configurable LeNet-5 in PyTorch, built the way skconv builds it (He-uniform weights for
relu layers, Glorot-uniform output layer, zero biases, 'same' convolutions, max pooling
2, Adam, scikit-learn's L2 term ``0.5 * alpha * sum ||W||^2 / batch``), with the
candidate additions switched by a JSON config:

- ``bn``: batch normalisation after every conv (before relu); ``dense_bn`` after the
  hidden dense layers too.
- ``head``: ``'flatten'`` (flatten -> hidden dense layers, LeNet-5) or ``'gap'`` /
  ``'gmp'`` (global average / max pooling after the last conv block, then the hidden
  dense layers); ``'auto'``: global average pooling for 1-D signals, flatten otherwise.
- ``dropout`` on the hidden dense layers' outputs; ``spatial_dropout`` on conv maps.
- ``schedule``: ``'constant'``, ``'cosine'`` (over the planned updates), ``'plateau'``
  (halve the step after ``patience`` epochs without a training-loss improvement of tol).
- ``aug``: seeded per-minibatch augmentation. Images: random shift by up to
  ``shift`` of the side (zero fill). Signals: random shift by up to ``shift`` of the
  length (zero fill), amplitude scaling ``exp(N(0, scale))`` and jitter
  ``N(0, jitter)``.
- budget: ``epochs`` and ``min_updates``: the run lasts
  ``min(max_epochs, max(epochs, ceil(min_updates / minibatches_per_epoch)))`` epochs.
- ``kernel`` / ``kernel_1d``, ``filters`` / ``filters_1d``: conv sizes (the ``_1d``
  entries, when given, apply to signals only).

Each run appends one JSON line (config, data set, seed, test accuracy, fit time, epochs,
updates) to ``--out``. Data loading is ``bench_learning``'s. One thread by default.

Example::

    python benchmarks/research_issue14_torch.py --data digits_raw GunPoint \\
        --seeds 0 1 2 --config '{"bn": true, "head": "auto"}' --out runs.jsonl
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_learning as bl  # noqa: E402

BASE = {
    "filters": [6, 16], "kernel": 5, "filters_1d": None, "kernel_1d": None,
    "bn": False, "dense_bn": False, "head": "flatten", "hidden": [120, 84],
    "dropout": 0.0, "spatial_dropout": 0.0,
    "lr": 1e-3, "alpha": 1e-4, "batch": 64,
    "schedule": "constant", "patience": 10, "tol": 1e-4, "warmup": 0,
    "epochs": 100, "min_updates": 0, "max_epochs": 100000,
    "aug": False, "shift": 0.1, "scale": 0.1, "jitter": 0.0, "aug_p": 1.0,
    "stop": "none",  # 'sklearn': stop when the training loss stalls n_iter_no_change
    "n_iter_no_change": 10,
    "pool": "max", "extra_blocks_1d": 0, "dilation_1d": 1,
    "pool_min_out": 1,  # pool only while the pooled map keeps >= this many cells/axis
}


def load(name, fashion_path=bl.FASHION_DEFAULT):
    if name.startswith("digits"):
        scaled = name == "digits_16"

        def split(seed):
            Xtr, Xte, ytr, yte = bl.load_digits_split(seed, scaled)
            return (Xtr.reshape(-1, 1, 8, 8).astype(np.float32),
                    Xte.reshape(-1, 1, 8, 8).astype(np.float32), ytr, yte)
        return split
    if name == "fashion":
        data = bl.load_fashion(fashion_path)
        return lambda seed: data
    data = bl.load_ucr(name)
    Xtr, Xte, ytr, yte = data
    classes = np.unique(ytr)
    data = (Xtr.astype(np.float32), Xte.astype(np.float32),
            np.searchsorted(classes, ytr), np.searchsorted(classes, yte))
    return lambda seed: data


class Net(nn.Module):
    def __init__(self, cfg, in_shape, n_classes):
        super().__init__()
        c_in, *spatial = in_shape
        nd = len(spatial)
        one_d = nd == 1
        Conv = nn.Conv1d if one_d else nn.Conv2d
        BN = nn.BatchNorm1d if one_d else nn.BatchNorm2d
        Pool = ((nn.MaxPool1d if one_d else nn.MaxPool2d) if cfg["pool"] == "max"
                else (nn.AvgPool1d if one_d else nn.AvgPool2d))
        Drop = nn.Dropout1d if one_d else nn.Dropout2d
        filters = cfg["filters_1d"] if one_d and cfg["filters_1d"] else cfg["filters"]
        kernel = cfg["kernel_1d"] if one_d and cfg["kernel_1d"] else cfg["kernel"]
        if not isinstance(kernel, list):
            kernel = [kernel] * len(filters)
        dil = cfg["dilation_1d"] if one_d else 1
        layers = []
        size = list(spatial)
        for f, k in zip(filters, kernel):
            layers.append(Conv(c_in, f, k, padding="same", dilation=dil,
                               bias=not cfg["bn"]))
            if cfg["bn"]:
                layers.append(BN(f))
            layers.append(nn.ReLU())
            if min(size) >= 2 * cfg["pool_min_out"]:
                layers.append(Pool(2))
                size = [s // 2 for s in size]
            if cfg["spatial_dropout"]:
                layers.append(Drop(cfg["spatial_dropout"]))
            c_in = f
        self.features = nn.Sequential(*layers)
        head = cfg["head"]
        if head == "auto":
            head = "gap" if one_d else "flatten"
        self.head = head
        n_in = c_in * (math.prod(size) if head == "flatten" else 1)
        dense = []
        for h in cfg["hidden"]:
            dense.append(nn.Linear(n_in, h, bias=not cfg["dense_bn"]))
            if cfg["dense_bn"]:
                dense.append(nn.BatchNorm1d(h))
            dense.append(nn.ReLU())
            if cfg["dropout"]:
                dense.append(nn.Dropout(cfg["dropout"]))
            n_in = h
        dense.append(nn.Linear(n_in, n_classes))
        self.classifier = nn.Sequential(*dense)
        # skconv's initialisation
        mods = [m for m in self.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d,
                                                            nn.Linear))]
        with torch.no_grad():
            for m in mods[:-1]:
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            nn.init.xavier_uniform_(mods[-1].weight)
            for m in mods:
                if m.bias is not None:
                    m.bias.zero_()
        self.weights = [m.weight for m in mods]

    def forward(self, x):
        x = self.features(x)
        if self.head == "gap":
            x = x.flatten(2).mean(2)
        elif self.head == "gmp":
            x = x.flatten(2).amax(2)
        else:
            x = x.flatten(1)
        return self.classifier(x)


def _shift_axis(x, axis, max_shift, gen):
    """Shift each sample along ``axis`` by a random integer in [-S, S], zero fill."""
    size = x.shape[axis]
    S = max(0, int(round(max_shift * size)))
    if S == 0:
        return x
    n = x.shape[0]
    s = torch.randint(-S, S + 1, (n,), generator=gen)
    # F.pad takes (before, after) pairs from the last axis backwards
    pads = []
    for ax in range(x.ndim - 1, 1, -1):
        pads += [S, S] if ax == axis else [0, 0]
    xp = nn.functional.pad(x, pads)
    idx = torch.arange(size)[None, :] + (S - s)[:, None]  # (n, size)
    shape = [n] + [1] * (x.ndim - 1)
    shape[axis] = size
    idx = idx.reshape(shape).expand(*[x.shape[d] if d != axis else size
                                      for d in range(x.ndim)])
    return torch.gather(xp, axis, idx)


def shift_batch(x, max_shift, gen):
    """Random integer shift per sample along every spatial axis, zero fill."""
    for axis in range(2, x.ndim):
        x = _shift_axis(x, axis, max_shift, gen)
    return x


def augment(x, cfg, gen):
    if cfg["aug_p"] < 1.0:
        keep = torch.rand(x.shape[0], generator=gen) >= cfg["aug_p"]
    else:
        keep = None
    y = shift_batch(x, cfg["shift"], gen) if cfg["shift"] else x
    if x.ndim == 3:  # signals
        if cfg["scale"]:
            y = y * torch.exp(cfg["scale"] * torch.randn(x.shape[0], 1, 1,
                                                         generator=gen))
        if cfg["jitter"]:
            y = y + cfg["jitter"] * torch.randn(y.shape, generator=gen)
    if keep is not None:
        y[keep] = x[keep]
    return y


def run(cfg, data, seed, threads=1):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    Xtr, Xte, ytr, yte = data
    Xtr, ytr = torch.from_numpy(np.ascontiguousarray(Xtr)), torch.from_numpy(
        np.asarray(ytr, dtype=np.int64))
    n_classes = int(max(ytr.max().item(), np.max(yte)) + 1)
    net = Net(cfg, tuple(Xtr.shape[1:]), n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    n = len(Xtr)
    batch = min(cfg["batch"], n)
    bpe = math.ceil(n / batch)
    epochs = min(cfg["max_epochs"],
                 max(cfg["epochs"], math.ceil(cfg["min_updates"] / bpe)))
    total = epochs * bpe
    best, bad, lr = np.inf, 0, cfg["lr"]
    step = 0
    start = time.perf_counter()
    done_epochs = 0
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        tot_loss = 0.0
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            if len(idx) < 2 and (cfg["bn"] or cfg["dense_bn"]):
                continue
            xb = Xtr[idx]
            if cfg["aug"]:
                xb = augment(xb, cfg, gen)
            if cfg["schedule"] == "cosine":
                w = min(1.0, (step + 1) / cfg["warmup"]) if cfg["warmup"] else 1.0
                lr_now = w * cfg["lr"] * 0.5 * (1 + math.cos(math.pi * step / total))
                for g in opt.param_groups:
                    g["lr"] = lr_now
            loss = nn.functional.cross_entropy(net(xb), ytr[idx])
            tot_loss += loss.item() * len(idx)
            loss = loss + 0.5 * cfg["alpha"] * sum(
                (w * w).sum() for w in net.weights) / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        done_epochs += 1
        ep_loss = tot_loss / n
        if ep_loss > best - cfg["tol"]:
            bad += 1
        else:
            bad = 0
        best = min(best, ep_loss)
        if cfg["schedule"] == "plateau" and bad > cfg["patience"]:
            lr /= 5 if cfg.get("plateau_factor") == 5 else 2
            for g in opt.param_groups:
                g["lr"] = lr
            bad = 0
        if cfg["stop"] == "sklearn" and bad > cfg["n_iter_no_change"]:
            break
    fit_time = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(torch.from_numpy(np.ascontiguousarray(
            Xte[i:i + 1000]))).argmax(1) for i in range(0, len(Xte), 1000)]).numpy()
    return (float(np.mean(pred == np.asarray(yte))), fit_time, done_epochs, step,
            fit_time / max(done_epochs, 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--config", action="append", required=True,
                   help="JSON overrides of BASE; repeat for several configs")
    p.add_argument("--name", action="append", help="names of the configs")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    names = args.name or [c for c in args.config]
    for data_name in args.data:
        loader = load(data_name)
        for cname, ctext in zip(names, args.config):
            cfg = {**BASE, **json.loads(ctext)}
            accs = []
            for seed in args.seeds:
                acc, t, ep, upd, t_ep = run(cfg, loader(seed), seed, args.threads)
                accs.append(acc)
                rec = {"name": cname, "data": data_name, "seed": seed, "acc": acc,
                       "fit_s": round(t, 2), "epochs": ep, "updates": upd,
                       "s_per_epoch": round(t_ep, 4), "config": json.loads(ctext)}
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            print(f"{data_name:22s} {cname:28s} mean={np.mean(accs):.4f} "
                  f"{' '.join(f'{a:.4f}' for a in accs)}", flush=True)


if __name__ == "__main__":
    main()
