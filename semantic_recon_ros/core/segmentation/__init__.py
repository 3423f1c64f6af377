"""2D semantic segmenters that turn color images into per-pixel class probabilities of the project's classes.

Pseudo-labels for label fusion and self-supervised training come from here. Any object with
``class_names`` and ``predict(color) -> (H, W, K) probabilities`` is a :class:`Segmenter`;
:func:`load_segmenter` makes one from ``"default"`` (the installed DeepLabV3/ADE20K TFLite model) or a model file
or folder (TFLite, ONNX, TorchScript, torch.export; formats in :mod:`.description`). :func:`confidence_weighted`
scales probabilities down where the depth placing them is unreliable, before fusion.
"""

from .class_mapping import ClassMapping, class_mapping_by_name, load_class_mapping
from .deeplab_ade20k import DeepLabADE20K
from .description import SegmenterDescription, describe
from .label_confidence import LabelConfidenceConfig, confidence_weighted, label_confidence
from .model_segmenter import (DEFAULT_SEGMENTER, ModelSegmenter, Segmentation, load_segmenter,
                              resolve_segmenter)
from .segmenter import Segmenter, labels_from_probs

__all__ = ["ClassMapping", "DEFAULT_SEGMENTER", "DeepLabADE20K", "LabelConfidenceConfig", "ModelSegmenter",
           "Segmentation", "Segmenter", "SegmenterDescription", "class_mapping_by_name", "confidence_weighted",
           "describe", "label_confidence", "labels_from_probs", "load_class_mapping", "load_segmenter",
           "resolve_segmenter"]
