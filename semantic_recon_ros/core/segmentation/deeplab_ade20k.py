"""DeepLabV3 + MobileNetV2 trained on ADE20K (TFLite) from a folder holding only ``model.tflite`` and ``labels.txt``.

The model takes a 1x513x513x3 float32 RGB image in [-1, 1] and returns 1x513x513x151 logits (channel 0 "other",
channel i = ADE20K class i of labels.txt). This is the installed default segmenter's description
(models/segmenters/deeplabv3-mobilenetv2-ade20k/segmenter.yaml) applied to another copy of the model, e.g. the
one in ../shared that the trainer's configs name.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..resources import share_file
from .description import DESCRIPTION_FILE, read_description, read_labels
from .model_segmenter import DEFAULT_SEGMENTER_DIR, ModelSegmenter


class DeepLabADE20K(ModelSegmenter):
    """Segmenter over the project's classes backed by the ADE20K TFLite model in ``model_dir``.

    Args:
        model_dir: folder with ``model.tflite`` and ``labels.txt`` (``ID<TAB>name``, IDs 1..150).
        class_names: project classes.
        mapping_path: ADE20K -> project class YAML (default config/ade20k_to_classes.yaml).
        num_threads: interpreter threads.
    """

    def __init__(self, model_dir: str | Path, class_names: Sequence[str], mapping_path: str | Path | None = None,
                 num_threads: int = 2):
        model_dir = Path(model_dir)
        model, labels = model_dir / "model.tflite", model_dir / "labels.txt"
        for path in (model, labels):
            if not path.is_file():
                raise FileNotFoundError(f"segmenter file missing: {path}")
        shipped = read_description(share_file(f"{DEFAULT_SEGMENTER_DIR}/{DESCRIPTION_FILE}"))
        description = replace(shipped, model=model, labels=read_labels(labels), labels_source=str(labels),
                              class_map=Path(mapping_path) if mapping_path is not None else shipped.class_map)
        super().__init__(description, class_names, num_threads=num_threads)
