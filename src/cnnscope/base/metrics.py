"""Classification metrics on arrays, defined once: the confusion matrix that training, the report, the errors
view and the viewer all read."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) int counts, rows the true class, columns the predicted one: the one confusion matrix."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    predicted = np.asarray(predicted).astype(np.int64).ravel()
    k = int(num_classes)
    return np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """The share of each true class predicted right (0 for a class with no images)."""
    confusion = np.asarray(confusion)
    return confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
