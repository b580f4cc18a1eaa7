"""``python -m skconv`` (skconv/__main__.py, skconv/_demo.py) and verbose progress.

The demo runs in-process through ``main(argv)`` with few epochs; one test starts
``python -m skconv`` in a subprocess from a scratch directory, so that it runs the
same skconv package these tests import (the installed one in CI), not whatever a
``skconv/`` folder in the working directory holds.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

import skconv
from skconv import ConvNetClassifier
from skconv.__main__ import main
from skconv.datasets import save_idx

OPTIONS = ["--epochs", "--batch-size", "--n-jobs", "--random-state", "--plot", "--data"]

NUMBER = r"[0-9]+(?:\.[0-9]+)?"
EPOCH_LINE = re.compile(
    rf"^Iteration (\d+), loss = ({NUMBER})(?:, validation score = ({NUMBER}))?, "
    rf"time = ({NUMBER}) s, elapsed = ({NUMBER}) s, ([0-9]+) images/s$"
)


def _row(name, out):
    """(test accuracy, fit time, epochs) of the summary row of ``name``."""
    match = re.search(
        rf"^{name} +({NUMBER}) +({NUMBER}) s +([0-9]+)", out, flags=re.MULTILINE)
    assert match, f"no summary row for {name} in:\n{out}"
    return float(match[1]), float(match[2]), int(match[3])


def _epoch_lines(out):
    return [m for m in map(EPOCH_LINE.match, out.splitlines()) if m]


def _assert_one_line_error(err, *words):
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m skconv: error: ")
    for word in words:
        assert word in lines[0]


# ------------------------------------------------------------------------------------
# The default run, on scikit-learn's digits
# ------------------------------------------------------------------------------------
def test_digits_run_reports_epochs_accuracy_and_mlp_reference(capsys):
    # MLPClassifier's matrices are tiny: its BLAS threads gain nothing and, on a
    # busy machine, spin for seconds. (skconv holds BLAS to one thread itself.)
    with threadpool_limits(limits=1, user_api="blas"):
        assert main(["--epochs", "2", "--random-state", "0"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # the ConvergenceWarning of --epochs 2 becomes a note, not noise

    assert "1347 training and 450 test images of 8x8 pixels, 10 classes" in out
    epochs = _epoch_lines(out)
    assert [int(m[1]) for m in epochs] == [1, 2]
    for m in epochs:
        assert m[3] is not None  # validation accuracy of early stopping
        assert 0 <= float(m[3]) <= 1 and int(m[6]) > 0
    losses = [float(m[2]) for m in epochs]
    assert losses[1] < losses[0]

    cnn_acc, cnn_time, cnn_epochs = _row("ConvNetClassifier", out)
    assert cnn_epochs == 2 and cnn_time > 0
    assert 0.5 < cnn_acc <= 1  # ~0.8 after two epochs; chance is 0.1
    assert re.search(r"^ConvNetClassifier .* 2 \(max_iter reached\)$", out, re.M)
    mlp_acc, mlp_time, mlp_epochs = _row("MLPClassifier", out)
    assert mlp_acc > 0.9 and mlp_time > 0 and mlp_epochs > 2
    assert "reference: MLPClassifier(max_iter=300, random_state=0)" in out


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m skconv")
    for option in OPTIONS:
        assert re.search(rf"^\s+{option}\b", out, re.M), option


@pytest.mark.parametrize(
    "argv, word",
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "many"], "--epochs"),
        (["--batch-size", "-3"], "--batch-size"),
        (["--n-jobs", "0"], "--n-jobs"),
        (["--random-state", "-1"], "--random-state"),
        (["--data"], "--data"),
        (["extra"], "extra"),
    ],
)
def test_bad_option_is_a_one_line_error(argv, word, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    _assert_one_line_error(err, word)


def test_python_m_skconv_bad_option_in_a_subprocess(tmp_path):
    # From a scratch directory, with the path of the skconv these tests import:
    # the installed package in CI, the source tree in a development checkout.
    package_parent = str(Path(skconv.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    result = subprocess.run(
        [sys.executable, "-m", "skconv", "--bogus"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    _assert_one_line_error(result.stderr, "--bogus")


# ------------------------------------------------------------------------------------
# --data: MNIST-format IDX files
# ------------------------------------------------------------------------------------
def _fake_mnist(directory, shape=(28, 28), n_train=60, n_test=15, n_classes=3,
                gzip_train_images=True):
    """Tiny learnable IDX data: class k lights up band k of the image, plus noise."""
    rng = np.random.default_rng(0)
    rows = shape[0]
    band = rows // n_classes

    def make(n):
        y = np.arange(n) % n_classes
        X = rng.integers(0, 60, size=(n, *shape))
        for k in range(n_classes):
            X[y == k, k * band:(k + 1) * band, :] += 180
        return X.astype(np.uint8), y.astype(np.uint8)

    X_train, y_train = make(n_train)
    X_test, y_test = make(n_test)
    suffix = ".gz" if gzip_train_images else ""
    save_idx(directory / f"train-images-idx3-ubyte{suffix}", X_train)
    save_idx(directory / "train-labels-idx1-ubyte", y_train)
    save_idx(directory / "t10k-images-idx3-ubyte", X_test)
    save_idx(directory / "t10k-labels-idx1-ubyte", y_test)
    return directory


@pytest.mark.parametrize("shape", [(28, 28), (12, 10)])
def test_data_dir_trains_and_reports(shape, tmp_path, capsys):
    _fake_mnist(tmp_path, shape=shape)
    argv = ["--data", str(tmp_path), "--epochs", "3", "--batch-size", "16"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert (f"60 training and 15 test images of {shape[0]}x{shape[1]} pixels, "
            "3 classes") in out
    assert f"IDX files in {tmp_path}" in out
    assert [int(m[1]) for m in _epoch_lines(out)] == [1, 2, 3]
    cnn_acc, _, cnn_epochs = _row("ConvNetClassifier", out)
    assert cnn_epochs == 3 and 0 <= cnn_acc <= 1
    mlp_acc, _, _ = _row("MLPClassifier", out)
    assert mlp_acc > 0.9  # the bands are easy


def test_data_missing_directory(tmp_path, capsys):
    missing = tmp_path / "no-such-dir"
    assert main(["--data", str(missing)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    _assert_one_line_error(err, "--data", str(missing))


def test_data_directory_without_idx_files(tmp_path, capsys):
    assert main(["--data", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    _assert_one_line_error(err, "train-images-idx3-ubyte")
    assert "Training" not in out and "Iteration" not in out


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _bad_magic(path):
    data = bytearray(path.read_bytes())
    data[0] = 0x42
    path.write_bytes(bytes(data))


def _broken_gzip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "name, damage, words",
    [
        ("t10k-labels-idx1-ubyte", _truncate, ["truncated"]),
        ("t10k-images-idx3-ubyte", _bad_magic, ["bad magic number"]),
        ("train-images-idx3-ubyte.gz", _broken_gzip, ["gzip"]),
    ],
)
def test_data_corrupt_file(name, damage, words, tmp_path, capsys):
    _fake_mnist(tmp_path)
    damage(tmp_path / name)
    assert main(["--data", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    _assert_one_line_error(err, name, *words)
    assert "Iteration" not in out


def test_data_unreadable_as_images(tmp_path, capsys):
    # Valid IDX, wrong content: float images are not MNIST.
    _fake_mnist(tmp_path)
    save_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((15, 28, 28), np.float32))
    assert main(["--data", str(tmp_path)]) == 1
    _assert_one_line_error(capsys.readouterr().err, "uint8")


def test_data_too_small_to_train(tmp_path, capsys):
    # 9 images, 3 classes: early stopping's validation split cannot hold every class.
    _fake_mnist(tmp_path, n_train=9, n_test=3)
    assert main(["--data", str(tmp_path), "--epochs", "2"]) == 1
    _assert_one_line_error(capsys.readouterr().err, "ConvNetClassifier", "validation")


# ------------------------------------------------------------------------------------
# --plot
# ------------------------------------------------------------------------------------
@pytest.mark.plot
def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.image import imread

    _fake_mnist(tmp_path)
    png = tmp_path / "demo.png"
    argv = ["--data", str(tmp_path), "--epochs", "2", "--plot", str(png)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert f"saved filters, feature maps and loss curve to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(png)
    assert image.shape[:2] == (900, 1000)
    assert image[..., :3].std() > 0.05  # something was drawn


@pytest.mark.plot
def test_plot_into_a_missing_directory_fails_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "nowhere" / "demo.png"
    assert main(["--plot", str(target)]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # nothing was trained
    _assert_one_line_error(err, "--plot", "nowhere")


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert main(["--plot", str(tmp_path / "demo.png")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    _assert_one_line_error(err, "matplotlib", "plot", "skconv[plot]")
    assert not (tmp_path / "demo.png").exists()


# ------------------------------------------------------------------------------------
# verbose=True on the estimator
# ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_200():
    X, y = load_digits(return_X_y=True)
    return (X[:200] / 16).astype(np.float32), y[:200]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_verbose_prints_one_line_per_epoch(digits_200, capsys):
    X, y = digits_200
    clf = ConvNetClassifier(verbose=True, max_iter=2, random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    matches = [EPOCH_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m[1]) for m in matches] == [1, 2]
    assert [m[2] for m in matches] == [f"{loss:.8f}" for loss in clf.loss_curve_]
    assert all(m[3] is None for m in matches)  # no validation without early stopping
    # Times are printed to 0.01 s, so a fast epoch may show 0.00; the rate is > 0 and
    # the elapsed time never goes back.
    assert all(float(m[4]) >= 0 and int(m[6]) > 0 for m in matches)
    assert float(matches[0][5]) <= float(matches[1][5])
    assert float(matches[1][5]) >= float(matches[0][5])  # elapsed grows


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_verbose_with_early_stopping_shows_the_validation_score(digits_200, capsys):
    X, y = digits_200
    clf = ConvNetClassifier(verbose=True, max_iter=2, early_stopping=True,
                            validation_fraction=0.2, random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    matches = [EPOCH_LINE.match(line) for line in lines]
    assert len(lines) == 2 and all(matches), lines
    assert [m[3] for m in matches] == [f"{s:f}" for s in clf.validation_scores_]
    # images/s counts the 160 training images, not the 40 validation ones. The time is
    # printed rounded to 0.01 s and the rate to an integer: bound by both roundings.
    for m in matches:
        shown_time, rate = float(m[4]), int(m[6])
        assert 160 / (shown_time + 0.005) - 1 <= rate
        if shown_time > 0.005:
            assert rate <= 160 / (shown_time - 0.005) + 1


def test_verbose_costs_no_extra_forward_pass(digits_200, monkeypatch):
    from skconv._nn import network as _network

    X, y = digits_200
    calls = []
    forward = _network.Network.forward

    def counting_forward(self, *args, **kwargs):
        calls.append(1)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(_network.Network, "forward", counting_forward)
    counts = []
    for verbose in (False, True):
        calls.clear()
        params = dict(max_iter=2, early_stopping=True, random_state=0, verbose=verbose)
        with pytest.warns(Warning):  # ConvergenceWarning
            ConvNetClassifier(**params).fit(X, y)
        counts.append(len(calls))
    assert counts[0] == counts[1] > 0
