"""2D semantic segmenters that turn color images into per-pixel class probabilities of the project's classes.

Pseudo-labels for label fusion and self-supervised training come from here. Any object with
``class_names`` and ``predict(color) -> (H, W, K) probabilities`` is a :class:`Segmenter`.
"""

from .class_mapping import ClassMapping, load_class_mapping
from .deeplab_ade20k import DeepLabADE20K
from .segmenter import Segmenter, labels_from_probs

__all__ = ["ClassMapping", "DeepLabADE20K", "Segmenter", "labels_from_probs", "load_class_mapping"]
