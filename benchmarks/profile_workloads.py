"""Where skconv's training minibatch and inference batch spend their time, step by
step, on the workloads of ``bench_workloads.py`` (and, with ``--torch``, where
PyTorch spends it on the same network).

Usage::

    python benchmarks/profile_workloads.py [--categories lenet signal1d ...]
        [--workloads NAME ...] [--quick] [--threads 1] [--batch-size 64]
        [--infer-batch 512] [--steps 30] [--float64] [--defaults] [--torch]

For each workload the network is the one ``ConvNetClassifier`` builds with LeNet-5's
options (``--defaults``: with the classifier's defaults, which on signals train the
time-series network of its 'auto' options): the script
fits the estimator for one epoch on a few synthetic samples and takes its network.
It then runs ``--steps`` training passes on one random minibatch after a warm-up,
timing each step of the network's plan forward and backward with
``time.perf_counter`` (a step is one layer, or several layers that run as one fused
step, as ``fit`` runs them), and ``--steps`` inference passes (``training=False``) on
a ``--infer-batch`` batch. Two whole-estimator figures frame them: ``fit`` time per
minibatch (one epoch on ``--steps`` minibatches, so it includes validation,
initialisation, gathering, the loss, L2 and Adam, which the per-step figures do not)
and ``predict_proba`` time per inference batch.

``--clock cpu`` times skconv with the process's CPU time (``time.process_time``)
instead: on one thread it is the wall time less the time the process waited for a
core, which keeps A/B comparisons readable on a shared machine; with more threads it
sums every thread's time (spinning OpenMP workers included), not a wall figure.

``--torch`` profiles the same network in PyTorch (``_torch_convnet.torch_convnet``)
in a separate process (so that the two OpenMP runtimes never share one): per-module
forward times for inference, and the operators of a training minibatch by self CPU
time from ``torch.profiler``.

This is a developer's tool, not a benchmark against a peer: it reaches the
estimator's private network and the engine's plan of steps (``Network.steps``).
"""

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np

from bench_workloads import CATEGORIES, LENET_OPTIONS, select_workloads, synthetic_data

WARM_UP_STEPS = 5


def _label(layer):
    """A short name for a layer: 'conv 6 k5 s1', 'max pool 2', 'relu', 'dense 120'."""
    kind = type(layer).__name__
    if kind == "Conv":
        text = f"conv {layer.filters} k{layer.kernel_size}"
        return text + (f" s{layer.stride}" if layer.stride != 1 else "")
    if kind == "Pool":
        return f"{layer.mode} pool {layer.pool_size}" + (
            f"/{layer.stride}" if layer.stride is not None else "")
    if kind == "Activation":
        return layer.name
    if kind == "Dense":
        return f"dense {layer.units}"
    return kind.lower()


def _network_steps(net, n_jobs):
    """``[(name, forward(x, training), backward(grad, need_input_grad))]`` in order.

    The engine's plan of steps (fused steps timed as ``fit`` runs them).
    """
    # Network.steps: the plan of step objects, each with the layers it runs.
    result = []
    for step in net.steps:
        name = " + ".join(_label(layer) for layer in step.layers)
        if len(step.layers) > 1:
            name += " (fused)"
        result.append((name,
                       lambda x, training, s=step: s.forward(x, n_jobs, training),
                       lambda g, need, s=step: s.backward(g, n_jobs, need)))
    return result


def _cross_entropy_grad(logits, y):
    """Gradient of the mean softmax cross-entropy with respect to the logits."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return (p / len(y)).astype(logits.dtype)


def _fitted(workload, X, y, args, max_iter=1):
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    from sklearn.exceptions import ConvergenceWarning

    from skconv import ConvNetClassifier

    # --defaults: the estimator's own network and options ('auto' resolved for this
    # input), as a user gets them, but one epoch (no update budget) so that the fit
    # figure stays per minibatch; otherwise LeNet-5, the network PyTorch runs.
    options = dict(min_updates=0) if args.defaults else LENET_OPTIONS
    clf = ConvNetClassifier(**{**options, **workload.params}, batch_size=args.batch_size,
                            max_iter=max_iter, n_iter_no_change=10**9, tol=0.0,
                            random_state=0, n_jobs=args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = clock()
        clf.fit(X, y)
    return clf, clock() - start


def profile_skconv(workload, args):
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    dtype = np.float64 if args.float64 else np.float32
    n_fit = args.batch_size * args.steps
    X, y = synthetic_data(workload.shape, max(n_fit, args.infer_batch), seed=0)
    X = X.astype(dtype, copy=False)
    _fitted(workload, X[:n_fit], y[:n_fit], args)  # warm-up
    clf, fit_time = _fitted(workload, X[:n_fit], y[:n_fit], args)
    net = clf._network
    steps = _network_steps(net, args.threads)
    xb, yb = X[:args.batch_size], y[:args.batch_size]
    forward = np.zeros(len(steps))
    backward = np.zeros(len(steps))
    for rep in range(WARM_UP_STEPS + args.steps):
        if rep == WARM_UP_STEPS:
            forward[:] = backward[:] = 0
        h = xb
        for s, (_, fwd, _) in enumerate(steps):
            start = clock()
            h = fwd(h, True)
            forward[s] += clock() - start
        grad = _cross_entropy_grad(h, yb)
        for s in reversed(range(len(steps))):
            start = clock()
            grad = steps[s][2](grad, s > 0)
            backward[s] += clock() - start
    infer = np.zeros(len(steps))
    xi = X[:args.infer_batch]
    for rep in range(WARM_UP_STEPS + args.steps):
        if rep == WARM_UP_STEPS:
            infer[:] = 0
        h = xi
        for s, (_, fwd, _) in enumerate(steps):
            start = clock()
            h = fwd(h, False)
            infer[s] += clock() - start
    clf.predict_proba(xi)
    start = clock()
    for _ in range(args.steps):
        clf.predict_proba(xi)
    predict = (clock() - start) / args.steps

    ms = 1e3 / args.steps
    network = (f"the classifier's defaults, 'auto' = {clf.auto_options_}" if args.defaults
               else workload.describe())
    print(f"\n## {workload.name}: {network}; skconv, {args.threads} "
          f"thread(s), {np.dtype(dtype).name}, mean of {args.steps} (ms, "
          f"{'CPU time' if args.clock == 'cpu' else 'wall time'})\n")
    print(f"| step | output shape | train fwd | train bwd | share of fwd+bwd | "
          f"infer fwd ({args.infer_batch}) |")
    print("|---|---|---|---|---|---|")
    total = forward.sum() + backward.sum()
    for s, (name, _, _) in enumerate(steps):
        print(f"| {name} | {_output_shape(net, steps, s)} | {forward[s] * ms:.3f} | "
              f"{backward[s] * ms:.3f} | {(forward[s] + backward[s]) / total:.0%} | "
              f"{infer[s] * ms:.3f} |")
    per_batch = fit_time / args.steps * 1e3
    print(f"| **sum of steps** | | {forward.sum() * ms:.3f} | {backward.sum() * ms:.3f} "
          f"| | {infer.sum() * ms:.3f} |")
    print(f"\nfit: {per_batch:.3f} ms per minibatch of {args.batch_size} (one epoch of "
          f"{args.steps}), of which {per_batch - total * ms:.3f} ms outside the steps "
          f"(validation, init, gather, loss, L2, Adam); predict_proba: "
          f"{predict * 1e3:.3f} ms per {args.infer_batch} samples, of which "
          f"{predict * 1e3 - infer.sum() * ms:.3f} ms outside the steps")


def _output_shape(net, steps, s):
    """Per-sample output shape of step ``s`` (the last layer of the step), if known."""
    shape = net.steps[s].layers[-1].output_shape
    return "x".join(map(str, shape)) if shape else "?"


def profile_torch(workload, args):
    import torch
    from torch.profiler import ProfilerActivity, profile

    from _torch_convnet import torch_convnet

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = torch.float64 if args.float64 else torch.float32
    net = torch_convnet(workload.shape, 10, **workload.params).to(dtype)
    X, y = synthetic_data(workload.shape, max(args.batch_size, args.infer_batch), seed=0)
    X = torch.from_numpy(X).to(dtype)
    y = torch.from_numpy(y)
    xb, yb = X[:args.batch_size], y[:args.batch_size]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step():
        optimizer.zero_grad()
        loss_fn(net(xb), yb).backward()
        optimizer.step()

    for _ in range(WARM_UP_STEPS):
        train_step()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            train_step()
    step_time = (time.perf_counter() - start) / args.steps
    # Per-module forward at the inference batch.
    xi = X[:args.infer_batch]
    names = [f"{type(m).__name__}" for m in net]
    times = np.zeros(len(net))
    with torch.inference_mode():
        for rep in range(WARM_UP_STEPS + args.steps):
            if rep == WARM_UP_STEPS:
                times[:] = 0
            h = xi
            for i, module in enumerate(net):
                start = time.perf_counter()
                h = module(h)
                times[i] += time.perf_counter() - start
    ms = 1e3 / args.steps
    print(f"\n### {workload.name}: PyTorch {torch.__version__}, {args.threads} "
          f"thread(s), mean of {args.steps} (ms)\n")
    print(f"training minibatch of {args.batch_size}: {step_time * 1e3:.3f} ms under the "
          f"profiler (forward, backward, Adam); operators by self CPU time:\n")
    print("| operator | self CPU per minibatch | calls per minibatch |")
    print("|---|---|---|")
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total,
                    reverse=True)
    for event in events[:args.top]:
        # self_cpu_time_total is in microseconds, summed over the profiled steps.
        print(f"| {event.key} | {event.self_cpu_time_total / 1e3 / args.steps:.3f} | "
              f"{event.count / args.steps:.0f} |")
    print(f"\ninference, batch {args.infer_batch}, per module: "
          + ", ".join(f"{n} {t * ms:.3f}" for n, t in zip(names, times))
          + f"; total {times.sum() * ms:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=CATEGORIES)
    parser.add_argument("--workloads", nargs="+", metavar="NAME")
    parser.add_argument("--quick", action="store_true",
                        help="the first workload of each category")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--infer-batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--float64", action="store_true",
                        help="float64 X (default: float32, or the workload's dtype)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="skconv's timer: wall time, or the process's CPU time")
    parser.add_argument("--defaults", action="store_true",
                        help="skconv with the classifier's defaults (on signals: the "
                             "time-series network) instead of LeNet-5's options; not "
                             "with --torch, whose network is LeNet-5")
    parser.add_argument("--torch", action="store_true",
                        help="also profile PyTorch on the same network")
    parser.add_argument("--top", type=int, default=8, help="PyTorch operators shown")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    workloads = select_workloads(args, parser)
    if args.defaults and args.torch:
        parser.error("--defaults profiles another network than PyTorch's: drop --torch")

    if args.torch_worker:
        for workload in workloads:
            profile_torch(workload, args)
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        # The thread count must hold from the start of the process (OpenMP and BLAS
        # read it once): run again with it set.
        sys.exit(subprocess.run([sys.executable] + sys.argv, env=env).returncode)
    print(f"{len(os.sched_getaffinity(0))} usable cores, load average "
          f"{os.getloadavg()[0]:.2f}")
    float64 = args.float64
    for workload in workloads:
        args.float64 = float64 or workload.dtype == "float64"
        profile_skconv(workload, args)
        if args.torch:
            command = [sys.executable, os.path.abspath(__file__), "--torch-worker",
                       "--workloads", workload.name] + [
                a for key, value in (("--threads", args.threads),
                                     ("--batch-size", args.batch_size),
                                     ("--infer-batch", args.infer_batch),
                                     ("--steps", args.steps), ("--top", args.top))
                for a in (key, str(value))] + (["--float64"] if args.float64 else [])
            sys.stdout.flush()
            result = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
            # torch.profiler notes its start and stop on stderr: drop those lines.
            sys.stderr.write("".join(line for line in result.stderr.splitlines(True)
                                     if not line.startswith("USDT:")))
            if result.returncode:
                sys.exit(result.returncode)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
