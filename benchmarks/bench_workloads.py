"""Training and inference throughput of ``ConvNetClassifier`` on every kind of input it
takes, against the same network in PyTorch (and other peers when installed).

Usage::

    python benchmarks/bench_workloads.py                # full run: every workload
    python benchmarks/bench_workloads.py --quick        # one workload per category, 1 run
    python benchmarks/bench_workloads.py --categories lenet signal1d --runs 5
    python benchmarks/bench_workloads.py --list         # the workloads and their shapes
    python benchmarks/bench_workloads.py --check        # same network as in PyTorch?

Options: ``--threads 1 2``, ``--runs 3``, ``--samples`` / ``--infer-samples`` (base
sample counts, scaled per workload), ``--epochs 2``, ``--batch-size 64``,
``--workloads NAME ...``, ``--peers ...``, ``--peer-categories lenet``,
``--json PATH`` (raw results), ``--plot PATH`` (a PNG of the ratios, needs
matplotlib).

What is measured
----------------
Each workload is one architecture of ``ConvNetClassifier`` (filters, kernel size,
stride, padding, pooling, window) on one input shape ``(C, *spatial)``, grouped in
categories: LeNet-5 on 1x28x28 images (5x5 kernels, max pooling), the same net with
conv stride 2, with average pooling, RGB 32x32 images with tens of 3x3 filters, 1-D
single-channel signals about a thousand samples long, 1-D multi-channel (ECG-like)
signals, 3-D volumes of a few thousand voxels with 3x3x3 kernels, and a float64 row.
``--list`` prints them.

- skconv: the public estimator only, ``ConvNetClassifier(**architecture,
  batch_size=64, max_iter=epochs, n_jobs=threads, random_state=0)``, with early
  stopping off (``tol=0``). ``fit`` is timed on N-d ``X`` of shape
  ``(n, C, *spatial)``, float32, for ``--epochs`` epochs, so the time includes what a
  user pays: validation, initialisation, shuffling, the loss and Adam;
  ``predict_proba`` is timed on ``--infer-samples`` new samples after a warm-up call.
- PyTorch: the same layers built by ``_torch_convnet.torch_convnet`` (zero padding
  split as skconv splits it, the same clipped pooling windows, the activation after
  max/min pooling as skconv orders it, He-uniform / Glorot-uniform initialisation
  and zero biases as skconv draws them), trained by an eager minibatch loop:
  a fresh permutation per epoch, ``CrossEntropyLoss``, ``torch.optim.Adam``
  (learning rate 1e-3, L2 1e-4 on the weights scaled as scikit-learn scales it);
  inference is ``softmax(net(x))`` in 512-sample batches under
  ``torch.inference_mode``. Threads: ``torch.set_num_threads``.
- The float64 row: skconv's ``fit`` / ``predict_proba`` on float64 ``X`` (numpy's
  default) against the same estimator on float32 ``X`` (and PyTorch in float32).
- Optional peers, on the ``--peer-categories`` workloads (LeNet-5 by default), each
  only when its package is importable and silently skipped otherwise: TensorFlow
  (Keras layers, channels last, a ``tf.function`` training step traced before the
  clock starts; intra-op threads set, one inter-op thread), ONNX Runtime and OpenVINO
  (inference only, on the PyTorch network exported with its softmax; OpenVINO forced
  to fp32). They are peers, not dependencies: install them in a scratch environment.

Protocol: all sides get the same synthetic data (a class template plus noise, in
[0, 1], 10 classes), the same batch size and the same thread count (also in
``OMP_NUM_THREADS``). Every measurement runs in its own fresh process; for each
workload and thread count the libraries alternate, the order rotating from run to
run, and the tables give the median images/s of ``--runs`` runs. A ratio is
skconv / peer (> 1: skconv is faster), the median over runs of the ratio within a
run (the two processes ran one after the other), so a load that drifts between runs
cancels out: the ratios are the figures to read on a busy machine, the absolute
images/s only on a quiet one. The thread speed-up columns are skconv's median
images/s with the most threads over those with one (not paired: read them from a
quiet machine only). Two threads on a 2-core machine that is busy with anything else
measure the contention, not the library.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from _torch_convnet import plan_convnet, torch_convnet

N_CLASSES = 10
PREDICT_BATCH = 512
ALPHA = 1e-4
LEARNING_RATE = 1e-3
OPTIONAL_PEERS = ("tensorflow", "onnxruntime", "openvino")
#: LeNet-5's filters, kernels and learning options, given explicitly: on signals passed
#: as N-d X the classifier's 'auto' defaults would add batch norm, a pooling head,
#: augmentation, another schedule and an update budget, and the peers run LeNet-5.
#: The filters and kernel size are named too, so the benchmarked network stays
#: LeNet-5's whatever the classifier's defaults become.
LENET_OPTIONS = dict(filters=(6, 16), kernel_size=5, batch_norm=False, head="flatten",
                     augment_shift=0.0, learning_rate="constant", min_updates=0,
                     input_scaling=None)
# What each optional peer needs importable in the worker (the inference-only peers
# convert the PyTorch network).
PEER_MODULES = {"torch": ("torch",), "tensorflow": ("tensorflow",),
                "onnxruntime": ("onnxruntime", "onnx", "torch"),
                "openvino": ("openvino", "torch")}


@dataclass(frozen=True)
class Workload:
    """One architecture on one input shape.

    ``scale`` multiplies ``--samples`` and ``--infer-samples`` so that the heavier
    workloads keep each process short (and within memory) and the lighter ones run
    long enough to time.
    """

    name: str
    category: str
    shape: tuple
    params: dict = field(default_factory=dict)
    scale: float = 1.0
    dtype: str = "float32"

    def describe(self):
        p = self.params
        text = "x".join(map(str, self.shape))
        text += f", filters {p.get('filters', (6, 16))}, k{p.get('kernel_size', 5)}"
        if p.get("stride", 1) != 1:
            text += f" s{p['stride']}"
        text += f" {p.get('padding', 'same')}, {p.get('pooling', 'max')} pool"
        text += f" {p.get('pool_size', 2)}"
        if p.get("pool_stride") is not None:
            text += f"/{p['pool_stride']}"
        if p.get("batch_norm"):
            text += ", batch norm"
        if p.get("head", "flatten") != "flatten":
            text += f", global {p['head']} pool head"
        if self.dtype != "float32":
            text += f", {self.dtype} X"
        return text


# The first workload of each category is the one --quick runs.
WORKLOADS = [
    Workload("lenet-28", "lenet", (1, 28, 28)),
    Workload("lenet-32-valid", "lenet", (1, 32, 32), dict(padding="valid")),
    Workload("lenet-28-min", "lenet", (1, 28, 28), dict(pooling="min")),
    Workload("stride2-28-k5", "stride2", (1, 28, 28), dict(stride=2), scale=2.0),
    Workload("stride2-28-k3", "stride2", (1, 28, 28), dict(kernel_size=3, stride=2),
             scale=2.0),
    Workload("stride2-32-k7", "stride2", (1, 32, 32), dict(kernel_size=7, stride=2)),
    Workload("stride2-rgb-32-k3", "stride2", (3, 32, 32),
             dict(filters=(16, 32), kernel_size=3, stride=2), scale=0.5),
    Workload("avg-28", "avg", (1, 28, 28), dict(pooling="avg"), scale=0.5),
    Workload("avg-28-k3-w3s2", "avg", (1, 28, 28),
             dict(kernel_size=3, pooling="avg", pool_size=3, pool_stride=2), scale=0.5),
    Workload("avg-32-valid", "avg", (1, 32, 32), dict(padding="valid", pooling="avg"),
             scale=0.5),
    Workload("rgb-32-16x32", "rgb", (3, 32, 32), dict(filters=(16, 32), kernel_size=3),
             scale=0.5),
    Workload("rgb-32-32x64", "rgb", (3, 32, 32), dict(filters=(32, 64), kernel_size=3),
             scale=0.125),
    Workload("rgb-32-32x32-avg", "rgb", (3, 32, 32),
             dict(filters=(32, 32), kernel_size=3, pooling="avg"), scale=0.125),
    Workload("signal-1000", "signal1d", (1, 1000), scale=0.25),
    Workload("signal-1024-k9-w4", "signal1d", (1, 1024),
             dict(kernel_size=9, pool_size=4), scale=0.5),
    Workload("signal-2000-k7-s2-avg3", "signal1d", (1, 2000),
             dict(kernel_size=7, stride=2, pooling="avg", pool_size=3)),
    Workload("signal-1000-defaults", "signal1d", (1, 1000),
             dict(filters=(16, 32, 64), kernel_size=7, batch_norm=True, head="avg"),
             scale=0.25),
    Workload("ecg-12x1000", "multichannel1d", (12, 1000), scale=0.5),
    Workload("ecg-12x500-k7-32x32", "multichannel1d", (12, 500),
             dict(filters=(32, 32), kernel_size=7), scale=0.25),
    Workload("ecg-12x2500-k9-w4", "multichannel1d", (12, 2500),
             dict(filters=(16, 32), kernel_size=9, pool_size=4), scale=0.125),
    Workload("volume-16^3", "volume3d", (1, 16, 16, 16), dict(kernel_size=3),
             scale=0.125),
    Workload("volume-12x16x16-avg", "volume3d", (1, 12, 16, 16),
             dict(kernel_size=3, filters=(8, 16), pooling="avg"), scale=0.25),
    Workload("volume-10x20x20-valid", "volume3d", (1, 10, 20, 20),
             dict(kernel_size=3, padding="valid"), scale=0.5),
    Workload("float64-lenet-28", "float64", (1, 28, 28), dtype="float64"),
]
WORKLOADS_BY_NAME = {w.name: w for w in WORKLOADS}
CATEGORIES = list(dict.fromkeys(w.category for w in WORKLOADS))


def synthetic_data(shape, n_samples, seed):
    """``n_samples`` float32 samples of ``shape`` in [0, 1] and their labels.

    One fixed random template per class plus noise, so training and test sets share
    the classes and the networks learn something (speed hardly depends on it).
    """
    templates = np.random.default_rng(12345).random((N_CLASSES,) + tuple(shape),
                                                    dtype=np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n_samples)
    X = np.empty((n_samples,) + tuple(shape), dtype=np.float32)
    # In chunks: the larger workloads would otherwise hold several copies at once.
    for start in range(0, n_samples, 2048):
        stop = min(start + 2048, n_samples)
        X[start:stop] = rng.random((stop - start,) + tuple(shape), dtype=np.float32)
        X[start:stop] *= np.float32(0.3)
        X[start:stop] += np.float32(0.7) * templates[y[start:stop]]
    return X, y


def _counts(workload, args):
    """Training and inference sample counts of one workload."""
    n_train = max(args.batch_size, int(round(args.samples * workload.scale)))
    n_infer = max(PREDICT_BATCH, int(round(args.infer_samples * workload.scale)))
    return n_train, n_infer


# -------------------------------------------------------------------------------------
# Workers: each runs in its own process and prints one JSON line
# -------------------------------------------------------------------------------------


def worker_skconv(workload, args, dtype=None):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from skconv import ConvNetClassifier

    dtype = np.dtype(dtype or workload.dtype)
    n_train, n_infer = _counts(workload, args)
    X, y = synthetic_data(workload.shape, n_train, seed=0)
    X = X.astype(dtype, copy=False)
    clf = ConvNetClassifier(
        **{**LENET_OPTIONS, **workload.params}, batch_size=args.batch_size,
        max_iter=args.epochs,
        n_iter_no_change=10**9, tol=0.0, random_state=0, n_jobs=args.threads,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X, y)
        train = time.perf_counter() - start
    X_test, _ = synthetic_data(workload.shape, n_infer, seed=1)
    X_test = X_test.astype(dtype, copy=False)
    clf.predict_proba(X_test[:PREDICT_BATCH])  # warm-up
    start = time.perf_counter()
    clf.predict_proba(X_test)
    infer = time.perf_counter() - start
    return {"train": n_train * args.epochs / train, "infer": n_infer / infer}


def worker_skconv_float32(workload, args):
    """skconv on float32 X: the reference of the float64 row."""
    return worker_skconv(workload, args, dtype=np.float32)


def worker_torch(workload, args):
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_train, n_infer = _counts(workload, args)
    X, y = synthetic_data(workload.shape, n_train, seed=0)
    net = torch_convnet(workload.shape, N_CLASSES, **workload.params)
    # The L2 penalty on the conv and dense kernels only: skconv does not penalise the
    # batch norms' scales and shifts (nor any bias).
    weighted = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
    weights = [m.weight for m in net.modules() if isinstance(m, weighted)]
    penalised = {id(p) for p in weights}
    biases = [p for p in net.parameters() if id(p) not in penalised]
    # scikit-learn's L2: loss += alpha / (2 * batch) * ||W||^2, i.e. grad += alpha/batch W.
    optimizer = torch.optim.Adam(
        [{"params": weights, "weight_decay": ALPHA / args.batch_size},
         {"params": biases, "weight_decay": 0.0}],
        lr=LEARNING_RATE,
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(n_train, generator=generator)
        for first in range(0, n_train, args.batch_size):
            idx = order[first:first + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(X_t[idx]), y_t[idx])
            loss.backward()
            optimizer.step()
    train = time.perf_counter() - start
    X_test, _ = synthetic_data(workload.shape, n_infer, seed=1)
    X_test = torch.from_numpy(X_test)
    net.eval()
    with torch.inference_mode():
        torch.softmax(net(X_test[:PREDICT_BATCH]), dim=1)  # warm-up
        start = time.perf_counter()
        for first in range(0, n_infer, PREDICT_BATCH):
            torch.softmax(net(X_test[first:first + PREDICT_BATCH]), dim=1)
        infer = time.perf_counter() - start
    return {"train": n_train * args.epochs / train, "infer": n_infer / infer}


def _keras_convnet(workload):
    """The network of ``plan_convnet`` in Keras, channels last (TensorFlow's CPU
    convolutions take no other layout)."""
    import keras
    from keras import layers

    n_axes = len(workload.shape) - 1
    conv_cls = (layers.Conv1D, layers.Conv2D, layers.Conv3D)[n_axes - 1]
    pad_cls = (layers.ZeroPadding1D, layers.ZeroPadding2D,
               layers.ZeroPadding3D)[n_axes - 1]
    max_cls = (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D)[n_axes - 1]
    avg_cls = (layers.AveragePooling1D, layers.AveragePooling2D,
               layers.AveragePooling3D)[n_axes - 1]
    names = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": "linear"}
    spatial = list(workload.shape[1:])
    model = [keras.Input(shape=tuple(spatial) + (workload.shape[0],))]
    for kind, spec in plan_convnet(workload.shape, N_CLASSES, **workload.params):
        if kind == "conv":
            same = [(t // 2, t - t // 2) for t in (
                max((-(-n // s) - 1) * s + k - n, 0)
                for n, k, s in zip(spatial, spec["kernel"], spec["stride"]))]
            padding = "valid"
            if spec["pads"] == same:
                padding = "same"  # TensorFlow's 'same' is skconv's: no extra copy
            elif any(lo or hi for lo, hi in spec["pads"]):
                model.append(pad_cls(spec["pads"][0] if n_axes == 1
                                     else tuple(spec["pads"])))
            model.append(conv_cls(spec["filters"], spec["kernel"], spec["stride"],
                                  padding=padding, kernel_initializer=spec["init"]))
            spatial = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(
                spatial, spec["kernel"], spec["stride"], spec["pads"])]
        elif kind == "pool":
            spatial = [(n - k) // s + 1
                       for n, k, s in zip(spatial, spec["window"], spec["stride"])]
            if spec["mode"] == "min":
                pool = max_cls(spec["window"], spec["stride"])
                model.append(layers.Lambda(lambda x, pool=pool: -pool(-x)))
            else:
                cls = max_cls if spec["mode"] == "max" else avg_cls
                model.append(cls(spec["window"], spec["stride"]))
        elif kind == "act":
            model.append(layers.Activation(names[spec["name"]]))
        elif kind == "flatten":
            model.append(layers.Flatten())
        elif kind in ("norm", "global_pool"):
            raise ValueError(f"{workload.name}: the Keras twin has no {kind!r} layer")
        else:
            model.append(layers.Dense(spec["units"], kernel_initializer=spec["init"]))
    return keras.Sequential(model)


def _channels_last(X):
    return np.ascontiguousarray(np.moveaxis(X, 1, -1))


def worker_tensorflow(workload, args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(0)
    import keras

    n_train, n_infer = _counts(workload, args)
    X, y = synthetic_data(workload.shape, n_train, seed=0)
    X_tf, y_tf = tf.constant(_channels_last(X)), tf.constant(y)
    model = _keras_convnet(workload)
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    kernels = [v for v in model.trainable_variables if "kernel" in v.path]
    l2 = ALPHA / (2 * args.batch_size)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def train_step(idx):
        xb, yb = tf.gather(X_tf, idx), tf.gather(y_tf, idx)
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
            loss += l2 * tf.add_n([tf.reduce_sum(tf.square(w)) for w in kernels])
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    # Trace (compile) outside the clock, as for any graph-mode framework.
    optimizer.build(model.trainable_variables)
    train_step.get_concrete_function()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = rng.permutation(n_train)
        for first in range(0, n_train, args.batch_size):
            train_step(tf.constant(order[first:first + args.batch_size]))
    train = time.perf_counter() - start

    X_test, _ = synthetic_data(workload.shape, n_infer, seed=1)
    X_test = tf.constant(_channels_last(X_test))
    predict = tf.function(lambda x: tf.nn.softmax(model(x, training=False)),
                          input_signature=[tf.TensorSpec((None,) + X_test.shape[1:])])
    predict(X_test[:PREDICT_BATCH]).numpy()  # trace and warm up
    start = time.perf_counter()
    for first in range(0, n_infer, PREDICT_BATCH):
        predict(X_test[first:first + PREDICT_BATCH]).numpy()
    infer = time.perf_counter() - start
    return {"train": n_train * args.epochs / train, "infer": n_infer / infer}


def _torch_inference_model(workload):
    """The PyTorch network with its softmax, for the inference-only peers."""
    import torch

    torch.manual_seed(0)
    net = torch_convnet(workload.shape, N_CLASSES, **workload.params)
    return torch.nn.Sequential(net, torch.nn.Softmax(dim=1)).eval()


def _time_inference(run_batch, workload, args):
    _, n_infer = _counts(workload, args)
    X_test, _ = synthetic_data(workload.shape, n_infer, seed=1)
    run_batch(X_test[:PREDICT_BATCH])  # warm-up
    start = time.perf_counter()
    for first in range(0, n_infer, PREDICT_BATCH):
        run_batch(X_test[first:first + PREDICT_BATCH])
    return {"train": None, "infer": n_infer / (time.perf_counter() - start)}


def worker_onnxruntime(workload, args):
    import onnxruntime as ort
    import torch

    torch.set_num_threads(1)
    model = _torch_inference_model(workload)
    example = torch.zeros((PREDICT_BATCH,) + workload.shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "convnet.onnx")
        torch.onnx.export(model, (example,), path, input_names=["x"],
                          output_names=["p"], dynamic_axes={"x": {0: "n"}, "p": {0: "n"}},
                          dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return _time_inference(lambda x: session.run(None, {"x": x}), workload, args)


def worker_openvino(workload, args):
    import openvino as ov
    import torch

    torch.set_num_threads(1)
    model = _torch_inference_model(workload)
    example = torch.zeros((PREDICT_BATCH,) + workload.shape)
    ov_model = ov.convert_model(model, example_input=example,
                                input=[((-1,) + workload.shape, ov.Type.f32)])
    compiled = ov.Core().compile_model(ov_model, "CPU", {
        "INFERENCE_NUM_THREADS": str(args.threads),
        # bf16 or f16 would be chosen on CPUs that have them: compare fp32 to fp32.
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
    })
    request = compiled.create_infer_request()
    return _time_inference(lambda x: request.infer({0: x}), workload, args)


WORKERS = {"skconv": worker_skconv, "skconv-float32": worker_skconv_float32,
           "torch": worker_torch, "tensorflow": worker_tensorflow,
           "onnxruntime": worker_onnxruntime, "openvino": worker_openvino}


# -------------------------------------------------------------------------------------
# Driver
# -------------------------------------------------------------------------------------


def run_worker(library, workload, threads, args):
    """One measurement in a fresh process: ``{'train': img/s or None, 'infer': img/s}``."""
    command = [
        sys.executable, os.path.abspath(__file__), "--worker", library,
        "--workloads", workload.name, "--threads", str(threads),
        "--samples", str(args.samples), "--infer-samples", str(args.infer_samples),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        if library in OPTIONAL_PEERS:
            # A peer that cannot run this workload (exporter or converter limits)
            # is left out of the table, not the end of the run.
            last = (result.stderr.strip().splitlines() or ["?"])[-1]
            print(f"  {library} failed on {workload.name}: {last}", file=sys.stderr)
            return None
        raise RuntimeError(f"{library} worker failed on {workload.name}:\n"
                           f"{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def libraries_for(workload, args, available):
    libraries = ["skconv"]
    if workload.category == "float64":
        libraries.append("skconv-float32")
    if "torch" in available:
        libraries.append("torch")
    if workload.category in args.peer_categories:
        libraries += [p for p in OPTIONAL_PEERS if p in available]
    return libraries


def measure_all(workloads, args, available):
    """``results[workload][threads][library]``: the list of ``--runs`` measurements
    (``{'train': img/s or None, 'infer': img/s}``, or None for a peer that failed)."""
    plan = [(w, t, libraries_for(w, args, available))
            for w in workloads for t in args.threads]
    total = sum(len(libs) for _, _, libs in plan) * args.runs
    done, started = 0, time.perf_counter()
    results = {}
    for workload, threads, libraries in plan:
        runs = {library: [] for library in libraries}
        for r in range(args.runs):
            # Rotate the order so that no library always runs first (or last) in a
            # drifting machine load.
            shift = r % len(libraries)
            for library in libraries[shift:] + libraries[:shift]:
                runs[library].append(run_worker(library, workload, threads, args))
                done += 1
                last = runs[library][-1]
                elapsed = time.perf_counter() - started
                text = "skipped" if last is None else ", ".join(
                    f"{key} {last[key]:,.0f} img/s" for key in ("train", "infer")
                    if last[key] is not None)
                print(f"[{done}/{total} {elapsed:5.0f} s] {workload.name}, {threads} "
                      f"thread(s), {library}: {text}", file=sys.stderr, flush=True)
        if all(r is None for r in runs.get("skconv", [None])):
            raise RuntimeError(f"no skconv measurement for {workload.name}")
        # A peer with no measurement at all is left out of the tables.
        results.setdefault(workload.name, {})[threads] = {
            library: r for library, r in runs.items() if any(x is not None for x in r)}
    return results


def speed(measured, library, key):
    """Median images/s of ``library`` (None when not measured)."""
    if library not in measured:
        return None
    return _median(r[key] for r in measured[library] if r is not None)


def ratio(measured, library, reference, key):
    """Median over runs of ``library``'s images/s over ``reference``'s in the same run.

    Paired by run: both ran one after the other, so a load that drifts between runs
    cancels out, which the ratio of the two medians would not do.
    """
    if library not in measured or reference not in measured:
        return None
    return _median(a[key] / b[key] for a, b in zip(measured[library], measured[reference])
                   if a is not None and b is not None and a[key] and b[key])


def _fmt(value):
    return "-" if value is None else f"{value:,.0f}"


def _fmt_ratio(value):
    return "-" if value is None else f"{value:.2f}"


def print_tables(workloads, results, args):
    threads = args.threads
    print("\n### skconv against PyTorch (images/s, median; ratio = skconv / torch, "
          "median of the per-run ratios)\n")
    print("| workload | input, architecture | threads | train skconv | train torch | "
          "train ratio | infer skconv | infer torch | infer ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w in workloads:
        for t in threads:
            m = results[w.name][t]
            cells = []
            for key in ("train", "infer"):
                cells += [_fmt(speed(m, "skconv", key)), _fmt(speed(m, "torch", key)),
                          _fmt_ratio(ratio(m, "skconv", "torch", key))]
            print(f"| {w.name} | {w.describe()} | {t} | " + " | ".join(cells) + " |")

    # The layout: ratios per thread count, then skconv's own thread scaling.
    scaling = len(threads) > 1 and min(threads) == 1
    most = max(threads)
    print("\n### Summary: skconv / torch"
          + (f", and skconv's speed-up from 1 to {most} threads (ratio of medians)"
             if scaling else "") + "\n")
    header = ["workload"]
    for t in sorted(threads, reverse=True):
        header += [f"train, {t} thr", f"infer, {t} thr"]
    if scaling:
        header += [f"skconv train {most}/1 thr", f"skconv infer {most}/1 thr"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for w in workloads:
        row = [w.name]
        for t in sorted(threads, reverse=True):
            row += [_fmt_ratio(ratio(results[w.name][t], "skconv", "torch", key))
                    for key in ("train", "infer")]
        if scaling:
            for key in ("train", "infer"):
                hi = speed(results[w.name][most], "skconv", key)
                lo = speed(results[w.name][1], "skconv", key)
                row.append(_fmt_ratio(hi / lo if hi and lo else None))
        print("| " + " | ".join(row) + " |")

    float64 = [w for w in workloads if w.category == "float64"]
    if float64:
        print("\n### float64 X against float32 X, both skconv (images/s, median; "
              "ratio = float64 / float32)\n")
        print("| workload | threads | train float64 X | train float32 X | ratio | "
              "infer float64 X | infer float32 X | ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for w in float64:
            for t in threads:
                m = results[w.name][t]
                cells = []
                for key in ("train", "infer"):
                    cells += [_fmt(speed(m, "skconv", key)),
                              _fmt(speed(m, "skconv-float32", key)),
                              _fmt_ratio(ratio(m, "skconv", "skconv-float32", key))]
                print(f"| {w.name} | {t} | " + " | ".join(cells) + " |")

    peered = [w for w in workloads if any(
        p in results[w.name][t] for t in threads for p in OPTIONAL_PEERS)]
    if peered:
        print("\n### Peers (images/s, median; x torch = images/s / PyTorch's, median "
              "of the per-run ratios)\n")
        print("| workload | threads | library | train | x torch | infer | x torch |")
        print("|---|---|---|---|---|---|---|")
        for w in peered:
            for t in threads:
                m = results[w.name][t]
                for library in [p for p in ("skconv", "torch") + OPTIONAL_PEERS
                                if p in m]:
                    cells = []
                    for key in ("train", "infer"):
                        cells += [_fmt(speed(m, library, key)),
                                  _fmt_ratio(ratio(m, library, "torch", key))]
                    print(f"| {w.name} | {t} | {library} | " + " | ".join(cells) + " |")
                # skconv's margin over the fastest other library, per measure.
                margins = []
                for key in ("train", "infer"):
                    others = [(speed(m, p, key), p) for p in m if p != "skconv"
                              and speed(m, p, key) is not None]
                    if others:
                        best = max(others)[1]
                        margins += [best, _fmt_ratio(ratio(m, "skconv", best, key))]
                    else:
                        margins += ["-", "-"]
                print(f"| {w.name} | {t} | skconv / fastest peer | {margins[0]} | "
                      f"{margins[1]} | {margins[2]} | {margins[3]} |")


def plot_ratios(workloads, results, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [w for w in workloads if "torch" in results[w.name][args.threads[0]]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(shown) + 1.8), sharey=True)
    positions = np.arange(len(shown))
    height = 0.8 / len(args.threads)
    for ax, key in zip(axes, ("train", "infer")):
        for i, t in enumerate(args.threads):
            ratios = [ratio(results[w.name][t], "skconv", "torch", key) or np.nan
                      for w in shown]
            ax.barh(positions + i * height, ratios, height, label=f"{t} thread(s)")
        ax.axvline(1, color="black", lw=0.8)
        ax.axvline(2, color="grey", ls="--", lw=0.8)
        ax.set_title({"train": "training", "infer": "inference"}[key]
                     + " images/s, skconv / PyTorch")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(positions + height * (len(args.threads) - 1) / 2,
                       [w.name for w in shown])
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")


def check_networks(workloads, args):
    """Copy each fitted skconv model into the PyTorch network and compare outputs.

    Uses the public fitted attributes (``conv_weights_``, ``conv_biases_``,
    ``coefs_``, ``intercepts_``) and the batch norms' parameters and running
    statistics, so it proves the two sides compute the same function.
    """
    import warnings

    import torch
    from sklearn.exceptions import ConvergenceWarning

    from skconv import ConvNetClassifier
    from skconv._estimators.inspection import network_of
    from skconv._nn.layers import BatchNorm

    for w in workloads:
        X, y = synthetic_data(w.shape, 256, seed=0)
        clf = ConvNetClassifier(**{**LENET_OPTIONS, **w.params}, max_iter=1, random_state=0,
                                n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        net = torch_convnet(w.shape, N_CLASSES, **w.params)
        convs = [m for m in net.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
        denses = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for m, weight, bias in zip(convs, clf.conv_weights_, clf.conv_biases_):
                m.weight.copy_(torch.from_numpy(np.asarray(weight, np.float32)))
                m.bias.copy_(torch.from_numpy(np.asarray(bias, np.float32)))
            for m, coef, intercept in zip(denses, clf.coefs_, clf.intercepts_):
                m.weight.copy_(torch.from_numpy(np.asarray(coef, np.float32).T))
                m.bias.copy_(torch.from_numpy(np.asarray(intercept, np.float32)))
            norms = [m for m in net.modules()
                     if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
            fitted = [layer for layer in network_of(clf).layers
                      if isinstance(layer, BatchNorm)]
            for m, layer in zip(norms, fitted, strict=True):
                for target, value in zip(
                        (m.weight, m.bias, m.running_mean, m.running_var),
                        (*layer.params, *layer.buffers)):
                    target.copy_(torch.from_numpy(np.asarray(value, np.float32)))
            net.eval()
            expected = torch.softmax(net(torch.from_numpy(X[:64])), dim=1).numpy()
        got = clf.predict_proba(X[:64].astype(w.dtype))
        error = float(np.abs(got - expected).max())
        n_params = sum(p.numel() for p in net.parameters())
        status = "ok" if error < 1e-4 else "MISMATCH"
        print(f"{w.name:24} {n_params:8,} parameters, max |p_skconv - p_torch| = "
              f"{error:.1e}: {status}")


def select_workloads(args, parser):
    """The workloads named by ``--workloads``, else those of ``--categories`` (the
    first of each category with ``--quick``); shared with profile_workloads.py."""
    if args.workloads:
        unknown = set(args.workloads) - set(WORKLOADS_BY_NAME)
        if unknown:
            parser.error(f"unknown workloads {sorted(unknown)}; see bench_workloads.py "
                         "--list")
        return [WORKLOADS_BY_NAME[name] for name in args.workloads]
    workloads = [w for w in WORKLOADS if w.category in args.categories]
    if args.quick:
        workloads = [next(w for w in workloads if w.category == c)
                     for c in dict.fromkeys(w.category for w in workloads)]
    return workloads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=CATEGORIES)
    parser.add_argument("--workloads", nargs="+", metavar="NAME",
                        help="only these workloads (see --list)")
    parser.add_argument("--quick", action="store_true",
                        help="the first workload of each category, 1 run (unless "
                             "--workloads / --runs say otherwise)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--samples", type=int, default=4096,
                        help="training samples before the per-workload scale "
                             "(default 4096)")
    parser.add_argument("--infer-samples", type=int, default=8192,
                        help="inference samples before the per-workload scale "
                             "(default 8192)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--peers", nargs="*", default=["torch"] + list(OPTIONAL_PEERS),
                        choices=["torch"] + list(OPTIONAL_PEERS),
                        help="peers to compare with, each only when importable")
    parser.add_argument("--peer-categories", nargs="*", default=["lenet"],
                        choices=CATEGORIES,
                        help="categories on which the optional peers run")
    parser.add_argument("--json", metavar="PATH", help="also save the raw medians")
    parser.add_argument("--plot", metavar="PATH", help="also plot the ratios (PNG)")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument("--check", action="store_true",
                        help="check that skconv and PyTorch build the same network")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)

    if args.worker:
        args.threads = args.threads[0]
        workload = WORKLOADS_BY_NAME[args.workloads[0]]
        print(json.dumps(WORKERS[args.worker](workload, args)))
        return

    workloads = select_workloads(args, parser)

    if args.list:
        for w in workloads:
            n_train, n_infer = _counts(w, args)
            print(f"{w.category:15} {w.name:24} {w.describe()}; {n_train} training, "
                  f"{n_infer} inference samples")
        return
    if args.check:
        check_networks(workloads, args)
        return

    # Decided without importing anything: a peer that is not installed is skipped.
    available = [p for p in args.peers
                 if all(importlib.util.find_spec(m) for m in PEER_MODULES[p])]
    if "torch" not in available:
        print("PyTorch not installed: skconv timings only", file=sys.stderr)
    print(f"{len(workloads)} workloads, threads {args.threads}, {args.epochs} epochs of "
          f"{args.samples} x scale training samples, {args.infer_samples} x scale "
          f"inference samples, batch {args.batch_size}; median of {args.runs} run(s), "
          f"each in its own process; peers: {', '.join(available) or 'none'}; "
          f"{len(os.sched_getaffinity(0))} usable cores, load average "
          f"{os.getloadavg()[0]:.2f}")
    # The workers inherit these, and they change the figures a lot on a busy machine
    # (spinning OpenMP threads wait for a descheduled team mate): record them.
    tuning = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                         "OMP_PROC_BIND", "KMP_BLOCKTIME")
              if k in os.environ}
    if tuning:
        print("OpenMP environment: " + ", ".join(f"{k}={v}" for k, v in tuning.items()))
    cores = len(os.sched_getaffinity(0))
    if os.getloadavg()[0] > 0.5 * cores:
        print(f"warning: the machine is busy (load average {os.getloadavg()[0]:.1f} on "
              f"{cores} cores): multi-thread figures will measure the contention")
    results = measure_all(workloads, args, available)
    print_tables(workloads, results, args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items() if k != "worker"},
                       "results": results}, f, indent=1)
    if args.plot:
        plot_ratios(workloads, results, args, args.plot)


if __name__ == "__main__":
    main()
