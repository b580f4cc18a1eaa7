"""Fixtures shared by the estimator tests: scikit-learn's digits, scaled to [0, 1]."""

import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


@pytest.fixture(scope="session")
def digits():
    """All 1,797 digits, ``X / 16`` (float64) and the labels."""
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="session")
def digits_small(digits):
    """300 digits, stratified: enough for the quick tests to learn something."""
    X, y = digits
    X, _, y, _ = train_test_split(X, y, train_size=300, stratify=y, random_state=0)
    return X, y


@pytest.fixture(scope="session")
def digits_split(digits):
    """The issues' benchmark split: 75/25, stratified, ``random_state=0``.

    Returns ``(X_train, X_test, y_train, y_test)``.
    """
    X, y = digits
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
