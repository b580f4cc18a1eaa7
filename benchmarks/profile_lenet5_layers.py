"""Where one LeNet-5 training minibatch spends its time, layer by layer.

Usage::

    python benchmarks/profile_lenet5_layers.py [--threads 1] [--batch-size 64]
        [--steps 60] [--params '{"batch_norm": true}']

Builds the default network of ``ConvNetClassifier`` for 28x28 images (float32; with
``--params``, a JSON dict of ``build_lenet5`` options, that network instead), then
runs ``--steps`` forward + backward passes on one random minibatch after 10 warm-up
passes, timing each step's forward and backward with ``time.perf_counter`` (a step is
a layer, a convolution fused with the 2x2 pooling and relu after it, a batch
normalisation fused with them, or a dense layer fused with its relu, as ``fit`` runs
them). The optimizer step, the loss and the
estimator's batching are not included (the whole ``fit`` is measured by
``bench_lenet5.py``). The layers are private API: this is a developer's tool, not a
benchmark against a peer.
"""

import argparse
import json
import time

import numpy as np

WARM_UP_STEPS = 10


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--params", default="{}",
                        help="JSON dict of build_lenet5 options, e.g. batch_norm")
    args = parser.parse_args(argv)

    from skconv._ops.loss import softmax_cross_entropy
    from skconv._nn.lenet import build_lenet5

    net = build_lenet5((1, 28, 28), n_classes=10, **json.loads(args.params))
    net.initialize((1, 28, 28), np.random.RandomState(0), np.float32)
    rng = np.random.default_rng(0)
    X = rng.random((args.batch_size, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, args.batch_size)
    # One timing per step of the network's plan: a layer, a convolution fused with
    # the pooling and relu after it, or a dense layer fused with its relu
    # (Network.steps), as fit runs them.
    steps = net.steps
    names = [" + ".join(repr(layer) for layer in step.layers) for step in steps]
    # As Network.backward: a step computes its input's gradient only when a step
    # before it has parameters (an augmentation first does not make the conv pay).
    trained_below = [any(layer.params for before in steps[:s] for layer in before.layers)
                     for s in range(len(steps))]
    forward = np.zeros(len(steps))
    backward = np.zeros(len(steps))
    for step in range(WARM_UP_STEPS + args.steps):
        if step == WARM_UP_STEPS:
            forward[:] = backward[:] = 0
        h = X
        for s, step_ in enumerate(steps):
            start = time.perf_counter()
            h = step_.forward(h, args.threads, True)
            forward[s] += time.perf_counter() - start
        _, grad = softmax_cross_entropy(h, y)
        for s in reversed(range(len(steps))):
            start = time.perf_counter()
            grad = steps[s].backward(grad, args.threads, trained_below[s])
            backward[s] += time.perf_counter() - start
    scale = 1e3 / args.steps
    print(f"LeNet-5, batch {args.batch_size}, {args.threads} thread(s), float32, "
          f"mean of {args.steps} steps (ms)")
    for s, name in enumerate(names):
        print(f"forward {forward[s] * scale:6.3f}  backward {backward[s] * scale:6.3f}  "
              f"{name}")
    print(f"total {(forward.sum() + backward.sum()) * scale:.3f} ms per minibatch")


if __name__ == "__main__":
    main()
