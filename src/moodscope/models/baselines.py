"""Baselines from scikit-learn, registered like the CNN-LSTM so every command takes them.

Each factory takes ``seed`` and returns an estimator with ``fit``/``predict_proba``;
``smote=False`` marks a model that must see the classes as they are (a majority vote over
SMOTE-balanced rows would pick a class at random).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from moodscope.models._registry import register_model


@register_model(kind="sklearn", smote=False)
def majority(seed: int = 0) -> DummyClassifier:
    """Always the most frequent class of the training tracks."""
    return DummyClassifier(strategy="prior")


@register_model(kind="sklearn")
def logistic_regression(seed: int = 0, C: float = 1.0, max_iter: int = 2000) -> LogisticRegression:
    """Multinomial logistic regression on the scaled features."""
    return LogisticRegression(C=C, max_iter=max_iter, random_state=seed)


@register_model(kind="sklearn")
def random_forest(
    seed: int = 0, n_estimators: int = 200, min_samples_leaf: int = 10, n_jobs: int = 1
) -> RandomForestClassifier:
    """A random forest (200 trees, leaves of >= 10 rows) on the feature rows.

    Leaves of 10 rows score as 2-row leaves do under track-disjoint CV on Emotify (track
    macro-F1 0.235 vs 0.224) in a model a fifth the size, small enough to ship.
    """
    return RandomForestClassifier(
        n_estimators=n_estimators,
        min_samples_leaf=min_samples_leaf,
        random_state=seed,
        n_jobs=n_jobs,
    )


@register_model(kind="sklearn")
def gradient_boosting(
    seed: int = 0, max_iter: int = 200, learning_rate: float = 0.05
) -> HistGradientBoostingClassifier:
    """Histogram gradient boosting on the feature rows (early stopping on 10 % of them)."""
    return HistGradientBoostingClassifier(
        max_iter=max_iter, learning_rate=learning_rate, random_state=seed
    )


class ShareRidge(ClassifierMixin, BaseEstimator):
    """Ridge regression onto the class distribution: trained on listener shares (soft labels)
    or one-hot labels; its outputs, clipped at a small floor and normalised, are the
    probabilities."""

    def __init__(self, alpha: float = 10.0, floor: float = 1e-3):
        self.alpha = alpha
        self.floor = floor

    def fit(self, X, y):
        y = np.asarray(y, dtype=int)
        self.classes_ = np.unique(y)
        targets = np.zeros((len(y), int(y.max()) + 1))
        targets[np.arange(len(y)), y] = 1.0
        return self.fit_soft(X, targets)

    def fit_soft(self, X, Y):
        Y = np.asarray(Y, dtype=float)
        self.classes_ = np.arange(Y.shape[1])
        self.ridge_ = Ridge(alpha=self.alpha).fit(X, Y)
        return self

    def predict_proba(self, X):
        out = np.clip(self.ridge_.predict(X), self.floor, None)
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


@register_model(kind="sklearn", smote=False)
def ridge(seed: int = 0, alpha: float = 10.0) -> ShareRidge:
    """Ridge regression onto the emotion distribution (made for soft labels)."""
    return ShareRidge(alpha=alpha)
