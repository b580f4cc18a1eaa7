"""The engine's epoch loop (``skconv._nn.training.run_epoch``): its minibatch hooks."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skconv._nn.lenet import build_lenet5
from skconv._nn.optimizers import Adam
from skconv._nn.training import run_epoch
from skconv._ops.loss import softmax_cross_entropy

N, BATCH = 50, 16  # minibatches of rows 0-15, 16-31, 32-47 and 48-49


def _epoch(sample_weight, loss=softmax_cross_entropy, **hooks):
    """One epoch of a small LeNet on random 8x8 images, in row order, from one start."""
    rng = np.random.RandomState(0)
    X = rng.rand(N, 1, 8, 8)
    y = rng.randint(0, 3, N)
    net = build_lenet5((1, 8, 8), 3, filters=(2, 3), kernel_size=3,
                       hidden_layer_sizes=(5,))
    net.initialize((1, 8, 8), rng, np.float64)
    value = run_epoch(net, Adam(net.params), X, y, sample_weight, np.arange(N),
                      batch_size=BATCH, alpha=1e-4, loss=loss,
                      n_threads=1, **hooks)
    return value, net.get_state()


@pytest.mark.parametrize("weighted", [False, True])
def test_minibatch_hooks_frame_every_minibatch_and_change_nothing(weighted):
    sample_weight = None
    if weighted:  # the last minibatch has only zero weights: skipped, still reported
        sample_weight = np.linspace(0.5, 2.0, N)
        sample_weight[48:] = 0
    calls = []
    value, state = _epoch(sample_weight,
                          minibatch_begin=lambda i: calls.append(("begin", i)),
                          minibatch_end=lambda i: calls.append(("end", i)))
    assert calls == [(hook, i) for i in range(4) for hook in ("begin", "end")]
    reference_value, reference_state = _epoch(sample_weight)
    assert value == reference_value
    for a, b in zip(state, reference_state, strict=True):
        assert_array_equal(a, b)


def test_a_minibatch_that_fails_does_not_end():
    calls = []

    def loss(logits, targets, weights):
        if len(calls) == 3:  # begin 0, end 0, begin 1
            raise ArithmeticError("in minibatch 1")
        return softmax_cross_entropy(logits, targets, weights)

    with pytest.raises(ArithmeticError, match="in minibatch 1"):
        _epoch(None, loss=loss, minibatch_begin=lambda i: calls.append(("begin", i)),
               minibatch_end=lambda i: calls.append(("end", i)))
    assert calls == [("begin", 0), ("end", 0), ("begin", 1)]
