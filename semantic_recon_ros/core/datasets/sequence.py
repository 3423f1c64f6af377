"""The random-access interface every posed RGB-D dataset reader implements."""

from __future__ import annotations

import abc
import operator
from collections.abc import Iterator

from ..camera import PinholeCamera
from ..frame import RGBDFrame


class FrameSequence(abc.ABC):
    """A random-access sequence of :class:`RGBDFrame` read lazily from disk.

    Attributes:
        name: short identifier of the sequence (e.g. its folder name).
        camera: intrinsics of the registered color/depth frames every item carries.
        num_skipped: frames present on disk that the reader leaves out (e.g. invalid poses, unmatched
            timestamps); 0 for readers that never skip.

    Subclasses implement ``__len__`` and ``_load(index)`` for ``0 <= index < len(self)``.
    """

    name: str
    camera: PinholeCamera
    num_skipped: int = 0

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def _load(self, index: int) -> RGBDFrame:
        """Read frame ``index`` (already range-checked, non-negative) from disk."""

    def __getitem__(self, index: int) -> RGBDFrame:
        """Load frame ``index`` (negative counts from the end); IndexError when out of range."""
        index = operator.index(index)
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"frame index {index} out of range for sequence {self.name!r} of {length} frames")
        return self._load(index % length).validate()

    def __iter__(self) -> Iterator[RGBDFrame]:
        for index in range(len(self)):
            yield self[index]

    def subset(
        self, start: int = 0, stop: int | None = None, stride: int = 1, max_frames: int | None = None
    ) -> "FrameSequence":
        """A lazy view of frames ``start:stop:stride`` (Python slice rules), at most ``max_frames`` of them."""
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0 or None, got {max_frames}")
        indices = range(len(self))[start:stop:stride]
        if max_frames is not None:
            indices = indices[:max_frames]
        return SequenceView(self, indices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, frames={len(self)}, camera={self.camera})"


class SequenceView(FrameSequence):
    """Frames ``indices`` of ``base``, in that order (made by :meth:`FrameSequence.subset`)."""

    def __init__(self, base: FrameSequence, indices: range) -> None:
        self.base = base
        self.indices = indices
        self.name = base.name
        self.camera = base.camera
        self.num_skipped = base.num_skipped

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, index: int) -> RGBDFrame:
        return self.base._load(self.indices[index])
