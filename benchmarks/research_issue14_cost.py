"""Issue 14 research: what each candidate default adds to the cost of an MNIST-size step.

Three measurements on 28x28 images, batch 64, float32, alternating the variants in one
process (``--rounds`` times) so that the load of a shared machine hits them alike; the
median of the rounds is printed:

1. skconv today: seconds per minibatch of ``ConvNetClassifier().partial_fit`` on
   ``--n`` random images (the MNIST epoch is 938 minibatches).
2. PyTorch LeNet-5, one thread: seconds per training step without and with batch
   normalisation after the convs, dropout on the dense layers, the global-average
   pooling head; the ratios estimate what each feature costs relative to the plain
   network (PyTorch's BN kernels are not skconv's, so this is an estimate).
3. numpy random shifts of a (64, 1, 28, 28) batch (the augmentation as the estimator
   would do it, one shifted copy per minibatch): seconds per minibatch, to set against
   the skconv step of (1).
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def skconv_step(n, threads, rng):
    from skconv import ConvNetClassifier

    X = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    clf = ConvNetClassifier(random_state=0, n_jobs=threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X[:64], y[:64], classes=np.arange(10))  # build, warm up
        start = time.perf_counter()
        clf.partial_fit(X, y)
    return (time.perf_counter() - start) / (n / 64)


def torch_step(cfg, steps, threads):
    import torch
    import research_issue14_torch as rt

    torch.set_num_threads(threads)
    cfg = {**rt.BASE, **cfg}
    net = rt.Net(cfg, (1, 28, 28), 10)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    net.train()
    for i in range(steps + 5):
        if i == 5:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def numpy_shift(rng, reps, max_shift=2):
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    start = time.perf_counter()
    for _ in range(reps):
        out = np.zeros_like(x)
        padded = np.pad(x, ((0, 0), (0, 0), (max_shift, max_shift),
                            (max_shift, max_shift)))
        dy = rng.integers(0, 2 * max_shift + 1, 64)
        dx = rng.integers(0, 2 * max_shift + 1, 64)
        for i in range(64):
            out[i] = padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    return (time.perf_counter() - start) / reps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--n", type=int, default=3200)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    variants = {
        "torch plain": {},
        "torch +bn": {"bn": True},
        "torch +bn +dropout.25": {"bn": True, "dropout": 0.25},
        "torch +bn +gap head": {"bn": True, "head": "gap"},
    }
    results = {k: [] for k in ["skconv today (s/minibatch)", *variants,
                               "numpy shift (s/minibatch)"]}
    for _ in range(args.rounds):
        results["skconv today (s/minibatch)"].append(
            skconv_step(args.n, args.threads, rng))
        for name, cfg in variants.items():
            results[name].append(torch_step(cfg, args.steps, 1))
        results["numpy shift (s/minibatch)"].append(numpy_shift(rng, 200))
    med = {k: float(np.median(v)) for k, v in results.items()}
    print("| what | median s per minibatch | ratio |")
    print("|---|---|---|")
    for k, v in med.items():
        if k.startswith("torch"):
            ratio = f"{v / med['torch plain']:.3f} x torch plain"
        elif k.startswith("numpy"):
            ratio = f"{v / med['skconv today (s/minibatch)']:.3f} x skconv step"
        else:
            ratio = f"MNIST epoch ~ {v * 938:.1f} s"
        print(f"| {k} | {v:.5f} | {ratio} |")


if __name__ == "__main__":
    main()
