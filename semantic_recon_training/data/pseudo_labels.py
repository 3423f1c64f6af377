"""2D training labels for the views of a chunk: a generic segmenter's predictions, or a dataset's own labels.

A :class:`LabelSource` turns one frame into an (H, W) int64 image of class ids (-1 = unlabeled). Two exist:

* :class:`SegmenterLabels` runs any :class:`~semantic_recon_ros.core.segmentation.Segmenter` (default: the
  ADE20K DeepLab model, :func:`deeplab_labels`) and keeps the argmax class where its probability reaches
  ``min_probability``. Predictions are cached on disk under
  ``<cache_dir>/<model hash>/<sequence key>/<frame index>.npz``, so a frame is segmented once per model
  (the hash covers the model files and the class mapping; change either and the cache starts afresh).
* :class:`GroundTruthLabels` uses ``frame.labels`` (synthetic scenes, ScanNet ``label/``, a bag's semantic
  topic); a frame without labels is an error, not a silent fallback.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from semantic_recon_ros.core.frame import RGBDFrame
from semantic_recon_ros.core.segmentation import DeepLabADE20K, Segmenter, labels_from_probs
from semantic_recon_ros.core.segmentation.class_mapping import DEFAULT_ADE20K_MAPPING
from semantic_recon_ros.core.resources import share_file

UNLABELED = -1
DEFAULT_SEGMENTER_DIR = "../shared/models/deeplabv3-mobilenetv2-ade20k"  # DeepLab ADE20K TFLite, from the repo root
HASH_CHUNK_BYTES = 1 << 20


class LabelSource(Protocol):
    """Per-frame class ids for training."""

    description: str  # recorded in chunk manifests, e.g. "ground_truth" or "segmenter:<hash>"

    def labels(self, sequence_key: str, index: int, frame: RGBDFrame) -> np.ndarray:
        """(H, W) int64 class ids of ``frame`` (frame ``index`` of the sequence ``sequence_key``), -1 = unlabeled."""
        ...


def files_hash(paths: Sequence[str | Path]) -> str:
    """SHA-256 (hex) over the names and contents of ``paths``, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"cannot hash missing file: {path}")
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(HASH_CHUNK_BYTES):
                digest.update(block)
    return digest.hexdigest()


def sequence_key(path: str | Path) -> str:
    """Cache key of the sequence in folder ``path``: its name plus a hash of its resolved location."""
    resolved = Path(path).resolve()
    return f"{resolved.name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:12]}"


def _valid_ids(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = labels.astype(np.int64)
    return np.where((labels >= 0) & (labels < num_classes), labels, UNLABELED)


class GroundTruthLabels:
    """The dataset's own 2D labels (``frame.labels``); ids outside ``[0, num_classes)`` become -1."""

    description = "ground_truth"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)

    def labels(self, sequence_key: str, index: int, frame: RGBDFrame) -> np.ndarray:
        if frame.labels is None:
            raise ValueError(f"frame {index} ({frame.name!r}) of {sequence_key} has no ground-truth labels; "
                             "use a segmenter as the label source for this sequence")
        return _valid_ids(frame.labels, self.num_classes)


class SegmenterLabels:
    """Argmax labels of a 2D segmenter, cached on disk per model, sequence and frame.

    Args:
        segmenter: predicts (H, W, K) probabilities over the project's classes.
        model_hash: identifies the model (e.g. :func:`files_hash` of its files); part of the cache path.
        cache_dir: cache root (None: no cache).
        min_probability: pixels whose best class has a lower probability are unlabeled.
    """

    def __init__(self, segmenter: Segmenter, model_hash: str, cache_dir: str | Path | None,
                 min_probability: float = 0.5) -> None:
        if not 0.0 <= min_probability <= 1.0:
            raise ValueError(f"min_probability must be in [0, 1], got {min_probability}")
        self.segmenter = segmenter
        self.model_hash = model_hash
        self.min_probability = float(min_probability)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.description = f"segmenter:{model_hash}:min_probability={self.min_probability:g}"

    def cache_path(self, sequence_key: str, index: int) -> Path | None:
        """Where the labels of frame ``index`` of ``sequence_key`` are cached (None without a cache)."""
        if self.cache_dir is None:
            return None
        threshold = f"p{round(self.min_probability * 1000):04d}"
        return self.cache_dir / f"{self.model_hash[:16]}-{threshold}" / sequence_key / f"{index:06d}.npz"

    def labels(self, sequence_key: str, index: int, frame: RGBDFrame) -> np.ndarray:
        path = self.cache_path(sequence_key, index)
        if path is not None and path.is_file():
            with np.load(path) as data:
                labels = data["labels"]
            if labels.shape == frame.color.shape[:2]:
                return labels.astype(np.int64)
        probs = self.segmenter.predict(frame.color)
        labels = _valid_ids(labels_from_probs(probs, self.min_probability), len(self.segmenter.class_names))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
            np.savez_compressed(tmp, labels=labels.astype(np.int16))
            os.replace(tmp, path)
        return labels


def deeplab_labels(model_dir: str | Path, class_names: Sequence[str], cache_dir: str | Path | None,
                   mapping_path: str | Path | None = None, min_probability: float = 0.5,
                   num_threads: int = 2) -> SegmenterLabels:
    """The default label source: DeepLabV3/ADE20K in ``model_dir`` mapped onto ``class_names``.

    The cache key hashes ``model.tflite``, ``labels.txt``, the class mapping YAML and the class names.
    """
    model_dir = Path(model_dir)
    mapping = Path(mapping_path) if mapping_path is not None else share_file(DEFAULT_ADE20K_MAPPING)
    segmenter = DeepLabADE20K(model_dir, class_names, mapping_path=mapping, num_threads=num_threads)
    files = files_hash([model_dir / "model.tflite", model_dir / "labels.txt", mapping])
    model_hash = hashlib.sha256("\n".join([files, *class_names]).encode()).hexdigest()
    return SegmenterLabels(segmenter, model_hash, cache_dir, min_probability)
