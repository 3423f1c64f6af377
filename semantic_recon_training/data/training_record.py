"""What a network was trained and validated on: stored in its inference checkpoint (``training``), read by the
evaluation to refuse scenes the network has seen.

Plain values (the checkpoint loads with ``weights_only=True``)::

    {"scenes": [{"scene": "synthetic_0003", "split": "train", "synthetic_seed": 3},
                {"scene": "7scenes-redkitchen", "split": "train", "path": "../shared/data/7scenes-redkitchen",
                 "frame_stride": 2, "max_frames": 250},
                {"scene": "synthetic_0011", "split": "validation", "synthetic_seed": 11}, ...]}

A sequence's ``path`` is relative to the repository root (never an absolute path of the machine that trained);
its frames are ``0, frame_stride, 2 * frame_stride, ...``, at most ``max_frames`` of them (0 = all). A network
fine-tuned from another checkpoint carries that checkpoint's scenes too; ``"complete": false`` when that
checkpoint recorded none (what the network has seen is then only partly known).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..paths import REPO_ROOT, repo_path

SPLITS = ("train", "validation")
# synthetic rooms with these seeds are the held-out evaluation scenes: no training config may use them
RESERVED_EVALUATION_SEEDS = range(900, 910)


@dataclass(frozen=True)
class RecordedScene:
    """One scene a network was trained (``split`` "train") or validated ("validation") on."""

    scene: str
    split: str
    synthetic_seed: int | None = None
    path: str | None = None  # recorded sequences: relative to the repository root
    frame_stride: int = 1
    max_frames: int = 0  # 0 = all frames

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"training record: scene {self.scene!r} has split {self.split!r}; known: {SPLITS}")

    @property
    def last_frame(self) -> int | None:
        """The last frame index of the sequence the network saw (None: every frame)."""
        return self.frame_stride * (self.max_frames - 1) if self.max_frames else None

    def is_sequence(self, folder: Path) -> bool:
        """Whether ``folder`` is this recorded sequence (same resolved path or same folder name)."""
        if self.path is None:
            return False
        return Path(repo_path(self.path)).resolve() == folder.resolve() or Path(self.path).name == folder.name


def relative_to_repo(path: str) -> str:
    """``path`` relative to the repository root (``../shared/...`` for the shared data beside the checkout)."""
    return os.path.relpath(path, REPO_ROOT)


@dataclass(frozen=True)
class TrainingRecord:
    """The scenes of a network's training (its own run and the runs it was fine-tuned from)."""

    scenes: tuple[RecordedScene, ...]
    complete: bool = True  # False: a run it was fine-tuned from recorded nothing

    def to_dict(self) -> dict:
        return {"scenes": [{k: v for k, v in asdict(s).items() if v is not None} for s in self.scenes],
                "complete": self.complete}

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingRecord":
        try:
            return cls(tuple(RecordedScene(**scene) for scene in values["scenes"]), bool(values.get("complete", True)))
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a training record ({err}): {values!r:.200}") from None

    def merged(self, other: "TrainingRecord") -> "TrainingRecord":
        """Both records' scenes (a fine-tuned network has seen those of its starting checkpoint too)."""
        return TrainingRecord(tuple(dict.fromkeys(self.scenes + other.scenes)), self.complete and other.complete)

    def synthetic_splits(self, seed: int) -> list[str]:
        """The splits synthetic room ``seed`` was in ("train", "validation"; empty: never seen)."""
        return sorted({s.split for s in self.scenes if s.synthetic_seed == seed})

    def sequence_scenes(self, folder: Path) -> list[RecordedScene]:
        """The recorded scenes that are the sequence ``folder``."""
        return [s for s in self.scenes if s.is_sequence(folder)]
