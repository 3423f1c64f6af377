"""Class ids back from the colors of a semantic mesh (the class palette, plus the unlabeled color)."""

from __future__ import annotations

import numpy as np

from semantic_recon_ros.core.classes import load_class_set


def vertex_labels(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 semantic mesh colors -> (N,) class ids of the default class set (-1 for the unlabeled color);
    fails when a color is not in the palette."""
    classes = load_class_set()
    palette = np.concatenate([classes.colors, np.array([classes.unlabeled_color], np.uint8)])
    match = (colors[:, None, :] == palette[None, :, :]).all(axis=2)
    assert match.any(axis=1).all(), "a mesh color is not in the class palette"
    labels = match.argmax(axis=1)
    return np.where(labels == classes.num_classes, -1, labels)
