"""Make the pictures the README shows: docs/filters.png, docs/feature_maps.png,
docs/loss_curve.png.

Trains the default ConvNetClassifier on scikit-learn's bundled 8x8 digits (held-out
quarter for the test score, early stopping on for the validation curve), then draws
the learned first-layer kernels, the feature maps of one test digit and the loss
curve. Needs the 'plot' extra: pip install "skconv[plot]".

    python docs/make_figures.py
"""

import pathlib
import sys
import time

import matplotlib

matplotlib.use("Agg")

HERE = pathlib.Path(__file__).resolve().parent
# Run from a clone (in-place build) as well as with skconv installed.
sys.path.insert(0, str(HERE.parent))

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from skconv import ConvNetClassifier  # noqa: E402
from skconv.plot import (  # noqa: E402
    FeatureMapsDisplay,
    FiltersDisplay,
    LossCurveDisplay,
)

DPI = 80  # keeps each PNG well under 150 KB


def main():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, stratify=y, random_state=0)
    clf = ConvNetClassifier(max_iter=30, early_stopping=True, random_state=0)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    print(f"fit: {clf.n_iter_} epochs in {time.perf_counter() - start:.1f} s, "
          f"test accuracy {clf.score(X_test, y_test):.3f}")

    def save(display, name):
        path = HERE / name
        display.figure_.savefig(path, dpi=DPI)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")

    save(FiltersDisplay.from_estimator(clf, layer=0), "filters.png")
    sample, label = X_test[0], y_test[0]
    predicted = clf.predict(sample.reshape(1, -1))[0]
    title = f"Feature maps of a test digit (label {label}, predicted {predicted})"
    save(FeatureMapsDisplay.from_estimator(clf, sample, title=title),
         "feature_maps.png")
    save(LossCurveDisplay.from_estimator(clf), "loss_curve.png")


if __name__ == "__main__":
    main()
