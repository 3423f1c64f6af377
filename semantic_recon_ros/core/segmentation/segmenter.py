"""The segmenter interface."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Segmenter(Protocol):
    """A 2D semantic segmenter over the project's classes."""

    class_names: tuple[str, ...]

    def predict(self, color: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W, K) float32 class probabilities (rows may sum to < 1: the
        missing mass belongs to classes outside the project's list)."""
        ...


def labels_from_probs(probs: np.ndarray, min_probability: float = 0.5) -> np.ndarray:
    """(H, W, K) probabilities -> (H, W) int64 argmax labels, -1 where the best class has less than
    ``min_probability``."""
    labels = probs.argmax(axis=-1)
    return np.where(probs.max(axis=-1) >= min_probability, labels, -1)
