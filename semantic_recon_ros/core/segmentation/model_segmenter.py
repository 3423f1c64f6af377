"""One segmenter over the project's classes for any supported model file: :func:`load_segmenter`.

A color image is resized to the model's input size, scaled and normalized as its description says, run by the
back-end of its file type, and the output (logits are softmaxed) is mapped onto the project's classes by the
class map and resized back to the image size (bilinear).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..resources import resolve_setting
from .backends import make_runner
from .class_mapping import class_mapping_by_name, load_class_mapping
from .description import InputSpec, SegmenterDescription, describe, with_class_map

DEFAULT_SEGMENTER = "default"
DEFAULT_SEGMENTER_DIR = "models/segmenters/deeplabv3-mobilenetv2-ade20k"
PROBE_SIZE = 64  # edge of the test image run at load time when the model does not declare its output channels


@dataclass(frozen=True)
class Segmentation:
    """A segmented image.

    Attributes:
        probabilities: (H, W, K) float32 probabilities of the project's classes (rows may sum to < 1: the rest
            belongs to model classes that map to no project class).
        confidence: (H, W) float32 probability of the model's most likely class of its own (before mapping).
    """

    probabilities: np.ndarray
    confidence: np.ndarray


class ModelSegmenter:
    """A :class:`~.segmenter.Segmenter` backed by a model file (see :mod:`.description` for the formats).

    Args:
        description: the model and its input/output formats.
        class_names: the project's classes (the map's).
        device: torch device of TorchScript / torch.export models, of ONNX models when onnxruntime has CUDA, and of
            the pre- and post-processing; TFLite runs on the CPU.
        num_threads: threads of the TFLite interpreter / ONNX Runtime session (torch models use torch's setting).
    Raises:
        ValueError naming the file: a class map naming a class the model or the project does not have, an output
        channel count that differs from the labels, an unsupported file type or layout.
    """

    def __init__(self, description: SegmenterDescription, class_names: Sequence[str],
                 device: torch.device | str | None = None, num_threads: int = 2):
        self.description = description
        self.class_names = tuple(class_names)
        self.source_names = description.labels
        self.device = torch.device(device if device is not None else "cpu")
        if not description.model.is_file():
            raise FileNotFoundError(f"segmenter file missing: {description.model}")
        if description.class_map is not None:
            self.mapping = load_class_mapping(self.source_names, self.class_names, description.class_map,
                                              description.labels_source)
        else:
            self.mapping = class_mapping_by_name(self.source_names, self.class_names, description.labels_source)
        self._matrix = torch.from_numpy(self.mapping.matrix).to(self.device)
        self._runner = make_runner(description.model, description.backend, self.device, num_threads)
        self.backend = self._runner.name
        spec = description.input
        self.input_layout = spec.layout or ("NHWC" if description.backend == "tflite" else "NCHW")
        self.output_layout = description.output.layout or self.input_layout
        self.input_size = self._input_size(spec)
        # value = (pixel / divisor + range[0] - mean) / std (the division, not a multiplication, keeps the default
        # model's input bit-identical to its reference preprocessing: it is sensitive to 1e-7 input differences)
        self._divisor = 255.0 / (spec.range[1] - spec.range[0])
        self._mean = torch.tensor(spec.mean).view(1, 3, 1, 1).to(self.device)
        self._std = torch.tensor(spec.std).view(1, 3, 1, 1).to(self.device)
        self._normalize = bool(spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0))
        self._check_output_channels()

    def __repr__(self) -> str:
        size = "any size" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"
        return (f"{self.backend} segmenter {self.description.model.name} ({size} {self.input_layout} "
                f"{self.description.input.channels}, {len(self.source_names)} classes -> {len(self.class_names)})")

    def _input_size(self, spec: InputSpec) -> tuple[int, int] | None:
        """The fixed (height, width) the model takes, or None for any size."""
        if isinstance(spec.size, tuple):
            return spec.size
        declared = self._runner.input_shape
        if spec.size == "any" or declared is None or len(declared) != 4:
            return None
        height, width = declared[1:3] if self.input_layout == "NHWC" else declared[2:4]
        return (height, width) if height is not None and width is not None else None

    def _check_output_channels(self) -> None:
        declared = self._runner.output_shape
        channels = None
        if declared is not None and len(declared) == 4:
            channels = declared[3] if self.output_layout == "NHWC" else declared[1]
        if channels is None:  # not declared: run a small image once
            size = self.input_size or (PROBE_SIZE, PROBE_SIZE)
            self._run(np.zeros((*size, 3), np.uint8))
        else:
            self._check_channels(channels)

    def _check_channels(self, channels: int) -> None:
        if channels != len(self.source_names):
            raise ValueError(f"{self.description.model}: the model outputs {channels} channels "
                             f"({self.output_layout}) but {self.description.labels_source} describes "
                             f"{len(self.source_names)} classes")

    def _model_size(self, height: int, width: int) -> tuple[int, int]:
        if self.input_size is not None:
            return self.input_size
        multiple = self.description.input.size_multiple
        return (max(multiple, round(height / multiple) * multiple), max(multiple, round(width / multiple) * multiple))

    def _run(self, color: np.ndarray) -> torch.Tensor:
        """The model's float32 output for ``color``, (1, h, w, S) or (1, S, h, w) as ``output_layout`` says."""
        if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
            raise ValueError(f"color must be (H, W, 3) uint8, got {color.shape} {color.dtype}")
        image = torch.from_numpy(color).to(self.device).permute(2, 0, 1)[None].float()
        if self.description.input.channels == "BGR":
            image = image.flip(1)
        size = self._model_size(*color.shape[:2])
        if size != color.shape[:2]:
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        image = image / self._divisor + self.description.input.range[0]
        if self._normalize:
            image = (image - self._mean) / self._std
        if self.input_layout == "NHWC":
            image = image.permute(0, 2, 3, 1)
        output = self._runner(image.contiguous()).to(self.device, torch.float32)
        if output.ndim == 3:  # no batch dimension
            output = output[None]
        if output.ndim != 4:
            raise ValueError(f"{self.description.model}: output of shape {tuple(output.shape)}, expected a "
                             f"{self.output_layout} image")
        self._check_channels(output.shape[3 if self.output_layout == "NHWC" else 1])
        return output

    def segment(self, color: np.ndarray) -> Segmentation:
        """(H, W, 3) uint8 RGB -> project-class probabilities and the model's confidence, at the image size."""
        output = self._run(color)
        # softmax, class map and top probability along the channel axis where it lies: a channels-last output is
        # not transposed first (3x faster for the default model's 151 x 513 x 513 logits)
        channel = 3 if self.output_layout == "NHWC" else 1
        scores = torch.softmax(output, dim=channel) if self.description.output.type == "logits" else output
        if channel == 3:
            both = torch.cat([scores @ self._matrix, scores.amax(dim=3, keepdim=True)], dim=3).permute(0, 3, 1, 2)
        else:
            probs = torch.einsum("nshw,sk->nkhw", scores, self._matrix)
            both = torch.cat([probs, scores.amax(dim=1, keepdim=True)], dim=1)
        if both.shape[-2:] != color.shape[:2]:
            both = F.interpolate(both, size=color.shape[:2], mode="bilinear", align_corners=False)
        both = both[0].permute(1, 2, 0).cpu()
        return Segmentation(both[..., :-1].contiguous().numpy(), both[..., -1].contiguous().numpy())

    def predict(self, color: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W, K) float32 project-class probabilities."""
        return self.segment(color).probabilities


def resolve_segmenter(value: str | Path | None) -> Path | None:
    """The segmenter a setting names: ``""``/None none, ``"default"`` the installed default model folder
    (``share/semantic_recon_ros/models/segmenters/deeplabv3-mobilenetv2-ade20k``), else a path (``~`` expanded).
    Raises FileNotFoundError naming what is missing."""
    return resolve_setting(value, DEFAULT_SEGMENTER_DIR, "segmenter", "default segmenter", folder_ok=True)


def load_segmenter(spec: str | Path | None, class_names: Sequence[str], device: torch.device | str | None = None,
                   *, num_threads: int = 2, class_map: str | Path | None = None) -> ModelSegmenter | None:
    """The segmenter ``spec`` names, over ``class_names``; None for ``""``/None.

    Args:
        spec: ``"default"`` (the installed DeepLabV3/ADE20K TFLite model), a model folder, a segmenter.yaml, or a
            model file (``.tflite`` TFLite, ``.onnx`` ONNX Runtime, ``.pt``/``.ts`` TorchScript, ``.pt2``
            torch.export); see :mod:`.description`.
        class_names: the project's classes.
        device: see :class:`ModelSegmenter` (default cpu).
        num_threads: TFLite / ONNX Runtime threads.
        class_map: a class map YAML replacing the description's.
    Raises:
        FileNotFoundError (a missing file) or ValueError (a mismatch), naming the file.
    """
    path = resolve_segmenter(spec)
    if path is None:
        return None
    return ModelSegmenter(with_class_map(describe(path), class_map), class_names, device, num_threads)
