"""Print a hash of the fitted weights and predictions of a few fixed configurations.

Run before and after a change that must not alter results (a refactor, a move of
files) and compare the two outputs: any difference in one bit of one weight or one
probability changes its line. Covers 1-D, 2-D and 3-D input, float32 and float64,
max/avg/min pooling, strided and padded convolutions, batch normalisation (the
signals' defaults have it too), both solvers, early stopping and n_jobs 1 and 2.

    python benchmarks/fingerprint_models.py > before.txt
    ... change ...
    python benchmarks/fingerprint_models.py | diff before.txt -
"""

import hashlib
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skconv import ConvNetClassifier

#: The images' conv blocks as LeNet-5 has them, explicit where a 2-D configuration
#: leaves them out: the classifier's 'auto' (filters, kernel_size) depends on the
#: planned updates (these fits plan 16, a short budget); "2d-defaults" fingerprints
#: what 'auto' gives.
LENET_BLOCKS = dict(filters=(6, 16), kernel_size=5)

CONFIGS = {
    "2d-defaults": dict(shape=(1, 12, 12), dtype=np.float32, params={}),
    "2d-lenet-f32": dict(shape=(1, 12, 12), dtype=np.float32, params=LENET_BLOCKS),
    "2d-lenet-f64": dict(shape=(1, 12, 12), dtype=np.float64, params=LENET_BLOCKS),
    "2d-rgb-avg-stride2": dict(shape=(3, 10, 9), dtype=np.float32,
                               params=dict(pooling="avg", stride=2, kernel_size=3,
                                           filters=(4, 5))),
    "2d-min-valid-sgd": dict(shape=(2, 11, 11), dtype=np.float64,
                             params=dict(pooling="min", padding="valid", kernel_size=3,
                                         filters=LENET_BLOCKS["filters"],
                                         solver="sgd", activation="tanh")),
    "2d-batch-norm": dict(shape=(1, 12, 12), dtype=np.float32,
                          params=dict(LENET_BLOCKS, batch_norm=True,
                                      learning_rate_init=5e-3,
                                      batch_norm_position="before_pool")),
    "2d-batch-norm-f64-odd": dict(shape=(2, 11, 9), dtype=np.float64,
                                  params=dict(batch_norm=True, kernel_size=3,
                                              filters=(3, 5),
                                              batch_norm_position="before_pool")),
    "2d-batch-norm-after-pool": dict(shape=(1, 12, 12), dtype=np.float32,
                                     params=dict(LENET_BLOCKS, batch_norm=True,
                                                 learning_rate_init=5e-3,
                                                 augment_shift=0.1)),
    "2d-batch-norm-after-pool-f64": dict(shape=(2, 11, 9), dtype=np.float64,
                                         params=dict(batch_norm=True, kernel_size=3,
                                                     filters=(3, 5), pooling="avg")),
    "1d-signal": dict(shape=(1, 40), dtype=np.float32,
                      params=dict(kernel_size=7, pool_size=3, filters=(4, 6))),
    "1d-multichannel-es": dict(shape=(5, 30), dtype=np.float64,
                               params=dict(kernel_size=3, early_stopping=True,
                                           activation="leaky_relu")),
    "3d-volume": dict(shape=(1, 6, 6, 6), dtype=np.float32,
                      params=dict(kernel_size=3, filters=(3, 4), hidden_layer_sizes=(16,))),
    "3d-volume-f64-avg": dict(shape=(2, 5, 6, 4), dtype=np.float64,
                              params=dict(kernel_size=(3, 2, 3), pooling="avg",
                                          filters=(3,), dilation=1)),
}


def digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def main():
    for name, cfg in CONFIGS.items():
        rng = np.random.RandomState(0)
        n = 60
        X = rng.standard_normal((n,) + cfg["shape"]).astype(cfg["dtype"])
        y = (X.reshape(n, -1)[:, :5].sum(axis=1) > 0).astype(int) + (
            X.reshape(n, -1)[:, 5] > 0.5)
        for n_jobs in (1, 2):
            est = ConvNetClassifier(max_iter=4, batch_size=16, random_state=1,
                                    n_jobs=n_jobs, **cfg["params"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.fit(X, y)
            weights = est.conv_weights_ + est.conv_biases_ + est.coefs_ + est.intercepts_
            proba = est.predict_proba(X)
            print(f"{name:24s} n_jobs={n_jobs} weights={digest(weights)} "
                  f"proba={digest([proba])} loss={est.loss_curve_[-1]!r}")


if __name__ == "__main__":
    main()
