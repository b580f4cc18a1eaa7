"""Inference throughput: a ``ConvNetClassifier`` exported to ONNX and run by
onnxruntime, against the same fitted model's own ``predict_proba``.

Usage::

    python benchmarks/bench_onnx.py [--threads 1 2] [--runs 5] [--samples 4096]
        [--workloads lenet rgb signal volume]

Needs the optional extra ``onnx`` (skl2onnx, onnx, onnxruntime).

What is measured: one model per workload, fitted for one epoch (the weights do not
change the work) and exported with ``skl2onnx.to_onnx(model, X[:1],
options={"zipmap": False})``. Each side gets the same ``--samples`` float32 images,
512 at a time (``predict_proba`` batches so itself; the ONNX session is fed slices
of 512), flat ``(n, n_features)`` as a pipeline passes them:

- skconv: ``model.predict_proba(X)`` with ``n_jobs=threads`` (and
  ``OMP_NUM_THREADS=threads`` in the worker's environment);
- onnxruntime: an ``InferenceSession`` on the CPU provider with
  ``intra_op_num_threads=threads``, one inter-op thread, default graph optimisations.

Protocol: every measurement runs in its own fresh process (a warm-up call, then the
median of 5 timed calls); for each workload and thread count the two sides alternate,
the order swapping from run to run, and the table gives the median images/s of
``--runs`` runs and the median of the within-run ratios skconv / onnxruntime (> 1:
skconv is faster), which cancels a load that drifts between runs. On a busy machine
read the ratios, not the absolute figures; two threads on a 2-core machine busy with
anything else measure the contention.
"""

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile

import numpy as np

from _timing import median_time

PREDICT_BATCH = 512
REPEATS = 5
# name -> (sample shape, estimator parameters): LeNet-5 by default.
WORKLOADS = {
    "lenet": ((1, 28, 28), {}),
    "rgb": ((3, 32, 32), dict(filters=(16, 32), kernel_size=3)),
    "signal": ((1, 1000), dict(filters=(8, 16), kernel_size=9, pool_size=4)),
    "volume": ((1, 16, 16, 16), dict(filters=(4, 8), kernel_size=3)),
}


def synthetic(shape, n_samples, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n_samples,) + shape, dtype=np.float32)
    y = rng.integers(0, 10, n_samples)
    return X.reshape(n_samples, -1), y


# ------------------------------------------------------------------------------------
# Workers (one measurement each, in a fresh process)
# ------------------------------------------------------------------------------------
def worker(args):
    folder, threads = args.model_dir, args.threads[0]
    X = np.load(os.path.join(folder, "X.npy"))
    if args.worker == "skconv":
        with open(os.path.join(folder, "model.pkl"), "rb") as f:
            model = pickle.load(f)
        model.set_params(n_jobs=threads)

        def run():
            model.predict_proba(X)
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run():
            for start in range(0, len(X), PREDICT_BATCH):
                session.run(None, {name: X[start:start + PREDICT_BATCH]})
    seconds = median_time(run, REPEATS)
    print(json.dumps({"images_per_s": len(X) / seconds}))


def measure(side, folder, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", side, "--model-dir",
         folder, "--threads", str(threads)],
        env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


# ------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------
def prepare(name, n_samples, folder):
    """Fit, pickle and export the workload's model; save the images to predict."""
    import warnings

    from skl2onnx import to_onnx
    from sklearn.exceptions import ConvergenceWarning

    import skconv.onnx  # noqa: F401  (registers the converter)
    from skconv import ConvNetClassifier

    shape, params = WORKLOADS[name]
    X_fit, y_fit = synthetic(shape, 256, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ConvNetClassifier(image_shape=shape, max_iter=1, random_state=0,
                                  **params).fit(X_fit, y_fit)
    X, _ = synthetic(shape, n_samples)
    onx = to_onnx(model, X[:1], options={"zipmap": False})
    # Same answers before timing anything.
    import onnxruntime as ort

    session = ort.InferenceSession(onx.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    proba = session.run(None, {session.get_inputs()[0].name: X[:64]})[1]
    assert np.abs(proba - model.predict_proba(X[:64])).max() < 1e-5
    with open(os.path.join(folder, "model.pkl"), "wb") as f:
        pickle.dump(model, f)
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(onx.SerializeToString())
    np.save(os.path.join(folder, "X.npy"), X)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--workloads", nargs="+", default=["lenet"],
                        choices=sorted(WORKLOADS))
    parser.add_argument("--worker", choices=["skconv", "onnxruntime"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import onnxruntime
    import skl2onnx

    load_start = os.getloadavg()[0]
    print(f"float32, {args.samples} images per call, batches of {PREDICT_BATCH}; "
          f"median of {args.runs} runs, each side in its own process, alternating; "
          f"{len(os.sched_getaffinity(0))} usable cores, load average {load_start:.2f}; "
          f"onnxruntime {onnxruntime.__version__}, skl2onnx {skl2onnx.__version__}")
    header = (f"{'workload':<8} {'shape':<12} {'threads':>7} | {'skconv img/s':>12} "
              f"{'onnxruntime':>12} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for name in args.workloads:
        with tempfile.TemporaryDirectory() as folder:
            prepare(name, args.samples, folder)
            for threads in args.threads:
                results = {"skconv": [], "onnxruntime": []}
                ratios = []
                for run in range(args.runs):
                    order = ["skconv", "onnxruntime"][::1 if run % 2 == 0 else -1]
                    this_run = {side: measure(side, folder, threads) for side in order}
                    for side, value in this_run.items():
                        results[side].append(value)
                    ratios.append(this_run["skconv"] / this_run["onnxruntime"])
                shape = "x".join(map(str, WORKLOADS[name][0]))
                print(f"{name:<8} {shape:<12} {threads:>7} | "
                      f"{statistics.median(results['skconv']):>12.0f} "
                      f"{statistics.median(results['onnxruntime']):>12.0f} "
                      f"{statistics.median(ratios):>6.2f}", flush=True)
    print(f"ratio = skconv images/s / onnxruntime images/s (> 1: skconv is faster); "
          f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
