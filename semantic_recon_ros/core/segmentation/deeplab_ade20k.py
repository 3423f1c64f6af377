"""DeepLabV3 + MobileNetV2 trained on ADE20K (TFLite), run with ai-edge-litert.

The model takes a 1x513x513x3 float32 RGB image in [-1, 1] and returns 1x513x513x151 logits
(channel 0 "other", channel i = ADE20K class i of labels.txt). Images are resized to 513x513
(aspect ratio not kept: the model is fully convolutional and tolerates it), the logits are
softmaxed, mapped onto the project's classes and resized back to the input size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .class_mapping import load_class_mapping

INPUT_SIZE = 513


class DeepLabADE20K:
    """Segmenter over the project's classes backed by the ADE20K TFLite model in ``model_dir``.

    Args:
        model_dir: folder with ``model.tflite`` and ``labels.txt`` (``ID<TAB>name``, IDs 1..150).
        class_names: project classes.
        mapping_path: ADE20K -> project class YAML (default config/ade20k_to_classes.yaml).
        num_threads: interpreter threads.
    """

    def __init__(self, model_dir: str | Path, class_names: Sequence[str], mapping_path: str | Path | None = None,
                 num_threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter  # imported here: optional dependency

        model_dir = Path(model_dir)
        model, labels = model_dir / "model.tflite", model_dir / "labels.txt"
        for path in (model, labels):
            if not path.is_file():
                raise FileNotFoundError(f"segmenter file missing: {path}")
        names = ["other"] + [line.split("\t", 1)[1].strip() for line in labels.read_text().splitlines() if line]
        self.class_names = tuple(class_names)
        self.mapping = load_class_mapping(names, self.class_names, mapping_path)
        self._interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        if self.mapping.matrix.shape[0] != self._interpreter.get_output_details()[0]["shape"][-1]:
            raise ValueError(f"{labels} lists {len(names) - 1} classes, the model outputs a different number")

    def predict(self, color: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W, K) float32 project-class probabilities."""
        if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
            raise ValueError(f"color must be (H, W, 3) uint8, got {color.shape} {color.dtype}")
        height, width = color.shape[:2]
        image = torch.from_numpy(color).permute(2, 0, 1)[None].float()
        image = F.interpolate(image, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        image = (image / 127.5 - 1.0).permute(0, 2, 3, 1).contiguous().numpy()
        self._interpreter.set_tensor(self._input, image)
        self._interpreter.invoke()
        logits = torch.from_numpy(self._interpreter.get_tensor(self._output)).permute(0, 3, 1, 2)
        probs = torch.softmax(logits, dim=1).permute(0, 2, 3, 1) @ torch.from_numpy(self.mapping.matrix)
        probs = F.interpolate(probs.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False)
        return probs[0].permute(1, 2, 0).contiguous().numpy()
