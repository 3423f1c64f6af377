"""A tf2-like buffer of timestamped rigid transforms between named frames (no ROS needed).

Frames form a tree: every frame has at most one parent, set by the transforms that name it as
child. An edge ``parent -> child`` stores ``T_parent_child`` (maps points in ``child`` into
``parent``) either once (static: valid at every time) or as timestamped samples (dynamic). A
lookup composes the edges along the tree path between two frames; each dynamic edge is
interpolated at the requested time between its two bracketing samples (linear translation,
quaternion slerp), like tf2. Times are integer nanoseconds; ``0`` means "the latest time at which
every edge on the path has data" (tf2's ``Time()``).

Errors mirror tf2's: :class:`LookupException` (a frame was never seen),
:class:`ConnectivityException` (the frames are in different trees) and
:class:`ExtrapolationException` (the time lies outside the stored samples of an edge; the message
says by how many seconds). All derive from :class:`TransformException`.

One mis-stamped sample must not wipe a history (tf2 prunes everything older than the newest sample
minus the cache duration, so a single transform stamped an hour ahead makes every later one "too old"):
a dynamic sample farther than the cache duration from its edge's newest sample is held back instead of
stored, unless it lies within the cache duration of the current time (``clock``, when the tree has one):
then the stamps really jumped (a pause longer than the cache, a clock reset, a restarted bag) and the
edge's history restarts with it. Otherwise the next sample of that edge decides: when it lies within the
cache duration of the held one (at a different stamp), the stamps jumped and the history restarts with
both; else the held sample is discarded and counted in ``discarded_samples``.

The class is not thread-safe; :mod:`semantic_recon_ros.ros.tf_buffer` wraps it with a lock.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

NANOSECONDS_PER_SECOND = 1_000_000_000
DEFAULT_CACHE_DURATION_NS = 10 * NANOSECONDS_PER_SECOND
LATEST_TIME = 0
_QUATERNION_NORM_TOLERANCE = 1e-6
_SLERP_LINEAR_THRESHOLD = 1.0 - 1e-9


class TransformException(Exception):
    """Base of every lookup failure."""


class LookupException(TransformException):
    """A requested frame does not exist in the tree."""


class ConnectivityException(TransformException):
    """The two frames exist but no chain of transforms connects them."""


class ExtrapolationException(TransformException):
    """The requested time lies outside the stored samples of an edge on the path."""


def rigid_from_translation_quaternion(translation: np.ndarray, quaternion_xyzw: np.ndarray) -> np.ndarray:
    """(3,) translation and (4,) quaternion ``(x, y, z, w)`` -> (4, 4) float64 rigid transform.

    The quaternion is normalised; ValueError when it is zero or not finite.
    """
    quaternion_xyzw = _normalized_quaternion(quaternion_xyzw)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(quaternion_xyzw).as_matrix()
    T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return T


def translation_quaternion_from_rigid(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4, 4) rigid transform -> ((3,) translation, (4,) unit quaternion ``(x, y, z, w)`` with w >= 0)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"expected a finite 4x4 transform, got shape {T.shape}")
    quaternion = Rotation.from_matrix(T[:3, :3]).as_quat()
    if quaternion[3] < 0:
        quaternion = -quaternion
    return T[:3, 3].copy(), quaternion


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions ``(x, y, z, w)`` along the shorter arc.

    ``alpha = 0`` gives ``q0``, ``alpha = 1`` gives ``q1`` (or ``-q1``, the same rotation).
    """
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > _SLERP_LINEAR_THRESHOLD:
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    return (np.sin((1.0 - alpha) * theta) * q0 + np.sin(alpha * theta) * q1) / sin_theta


def _normalized_quaternion(quaternion_xyzw: np.ndarray) -> np.ndarray:
    q = np.asarray(quaternion_xyzw, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(q) if q.shape == (4,) else 0.0
    if q.shape != (4,) or not np.isfinite(q).all() or norm < _QUATERNION_NORM_TOLERANCE:
        raise ValueError(f"quaternion must be 4 finite numbers (x, y, z, w) with non-zero norm, got {q}")
    return q / norm


def _seconds(stamp_ns: int) -> str:
    return f"{stamp_ns / NANOSECONDS_PER_SECOND:.9f}"


@dataclass
class _Edge:
    """``T_parent_child`` samples of one child frame, sorted by stamp (a static edge has one, stamp 0)."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quaternions: list[np.ndarray] = field(default_factory=list)
    held: tuple[int, np.ndarray, np.ndarray] | None = None  # a sample far from the history, awaiting confirmation
    invalid: list[int] = field(default_factory=list)  # stamps of refused samples: no interpolation across them

    def insert(self, stamp_ns: int, translation: np.ndarray, quaternion: np.ndarray) -> None:
        index = bisect.bisect_left(self.stamps, stamp_ns)
        if index < len(self.stamps) and self.stamps[index] == stamp_ns:
            self.translations[index], self.quaternions[index] = translation, quaternion
            return
        self.stamps.insert(index, stamp_ns)
        self.translations.insert(index, translation)
        self.quaternions.insert(index, quaternion)

    def drop_before(self, stamp_ns: int) -> None:
        count = bisect.bisect_left(self.stamps, stamp_ns)
        if count:
            del self.stamps[:count], self.translations[:count], self.quaternions[:count]
        del self.invalid[:bisect.bisect_left(self.invalid, stamp_ns)]

    def sample(self, stamp_ns: int, describe: str) -> tuple[np.ndarray, np.ndarray]:
        """(translation, quaternion) at ``stamp_ns``; ExtrapolationException outside the samples."""
        if self.static:
            return self.translations[0], self.quaternions[0]
        first, last = self.stamps[0], self.stamps[-1]
        if stamp_ns < first or stamp_ns > last:
            if stamp_ns < first:
                direction, gap, bound = "past", first - stamp_ns, f"the earliest data is at time {_seconds(first)}"
            else:
                direction, gap, bound = "future", stamp_ns - last, f"the latest data is at time {_seconds(last)}"
            raise ExtrapolationException(
                f"Lookup would require extrapolation {gap / NANOSECONDS_PER_SECOND:.9f} s into the {direction}. "
                f"Requested time {_seconds(stamp_ns)} but {bound}, {describe}"
            )
        index = bisect.bisect_left(self.stamps, stamp_ns)
        if self.stamps[index] == stamp_ns:
            return self.translations[index], self.quaternions[index]
        t0, t1 = self.stamps[index - 1], self.stamps[index]
        refused = bisect.bisect_right(self.invalid, t0)
        if refused < len(self.invalid) and self.invalid[refused] < t1:
            raise ExtrapolationException(
                f"the transform at time {_seconds(self.invalid[refused])} was invalid: no pose is interpolated across "
                f"it (requested time {_seconds(stamp_ns)}), {describe}")
        alpha = (stamp_ns - t0) / (t1 - t0)
        translation = (1.0 - alpha) * self.translations[index - 1] + alpha * self.translations[index]
        return translation, slerp(self.quaternions[index - 1], self.quaternions[index], alpha)


class TransformTree:
    """Timestamped transforms between named frames with tf2 lookup semantics (see the module docstring).

    Args:
        cache_duration_ns: history kept per dynamic edge, measured back from the edge's newest
            sample (tf2 default 10 s); older samples are dropped and older inserts ignored.
            None keeps everything (offline use, e.g. a whole bag).
        clock: the current time in ns (0 when unknown, e.g. sim time before its first message), which
            vouches for samples near it (see the module docstring); None: no clock.
    """

    def __init__(self, cache_duration_ns: int | None = DEFAULT_CACHE_DURATION_NS,
                 clock: Callable[[], int] | None = None) -> None:
        if cache_duration_ns is not None and cache_duration_ns <= 0:
            raise ValueError(f"cache_duration_ns must be positive or None, got {cache_duration_ns}")
        self.cache_duration_ns = cache_duration_ns
        self.clock = clock
        self.discarded_samples = 0  # held back as too far from their edge's history, and never confirmed
        self._edges: dict[str, _Edge] = {}
        self._frames: set[str] = set()

    @property
    def frames(self) -> frozenset[str]:
        """Every frame name seen as parent or child."""
        return frozenset(self._frames)

    def clear(self) -> None:
        """Forget every frame and transform."""
        self._edges.clear()
        self._frames.clear()

    def set_transform(
        self,
        parent_frame: str,
        child_frame: str,
        stamp_ns: int,
        translation: np.ndarray,
        quaternion_xyzw: np.ndarray,
        *,
        static: bool = False,
    ) -> bool:
        """Store ``T_parent_child`` given as (3,) translation and (4,) quaternion ``(x, y, z, w)``.

        A static transform replaces the child's edge and is valid at every time (``stamp_ns`` is
        ignored). A dynamic sample is added to the child's history; if the child had a different
        parent or a static edge, the history restarts. Returns False (and stores nothing yet) when the
        sample lies farther than the cache duration from the edge's newest sample: it is held back
        until the next sample confirms or refutes the jump (see the module docstring).

        Raises ValueError for empty or equal frame names, a non-finite transform, a zero quaternion
        or an edge that would close a loop in the tree. A refused dynamic sample of a known edge is remembered:
        lookups between its neighbours fail instead of interpolating across it.
        """
        parent_frame, child_frame = _frame_name(parent_frame), _frame_name(child_frame)
        if parent_frame == child_frame:
            raise ValueError(f"a transform needs two different frames, got {parent_frame!r} for both")
        edge = self._edges.get(child_frame)
        try:
            translation = np.asarray(translation, dtype=np.float64).reshape(-1)
            if translation.shape != (3,) or not np.isfinite(translation).all():
                raise ValueError(f"translation of {parent_frame} -> {child_frame} must be 3 finite numbers, got "
                                 f"{translation}")
            quaternion = _normalized_quaternion(quaternion_xyzw)
        except ValueError:
            if not static and edge is not None and not edge.static and edge.parent == parent_frame:
                bisect.insort(edge.invalid, int(stamp_ns))  # the pose at this time is unknown, not interpolated
            raise
        self._check_no_loop(parent_frame, child_frame)
        if static:
            edge = _Edge(parent_frame, static=True)
            edge.insert(0, translation, quaternion)
        else:
            stamp_ns = int(stamp_ns)
            if edge is None or edge.static or edge.parent != parent_frame:
                edge = _Edge(parent_frame, static=False)
            elif self.cache_duration_ns is not None:
                edge = self._bounded_edge(edge, stamp_ns, translation, quaternion)
                if edge is None:
                    return False
            edge.insert(stamp_ns, translation, quaternion)
        self._edges[child_frame] = edge
        self._frames.update((parent_frame, child_frame))
        return True

    def _bounded_edge(self, edge: _Edge, stamp_ns: int, translation: np.ndarray,
                      quaternion: np.ndarray) -> _Edge | None:
        """The edge to insert a dynamic sample into under the cache duration (pruned, or restarted by a confirmed
        jump); None when the sample is held back as a jump awaiting confirmation."""
        cache = self.cache_duration_ns
        held, edge.held = edge.held, None
        if abs(stamp_ns - edge.stamps[-1]) <= cache:
            self.discarded_samples += held is not None  # the history went on: the held sample was an outlier
            edge.drop_before(max(edge.stamps[-1], stamp_ns) - cache)
            return edge
        now_ns = self.clock() if self.clock is not None else 0
        if now_ns and abs(stamp_ns - now_ns) <= cache:  # the clock vouches for the jump
            self.discarded_samples += held is not None
            return _Edge(edge.parent, static=False)
        if held is not None and 0 < abs(stamp_ns - held[0]) <= cache:  # two samples agree: the stamps jumped
            restarted = _Edge(edge.parent, static=False)
            restarted.insert(*held)
            return restarted
        self.discarded_samples += held is not None
        edge.held = (stamp_ns, translation, quaternion)
        return None

    def newest_stamp(self, child_frame: str) -> int | None:
        """Stamp (ns) of the newest stored sample of ``child_frame``'s edge; 0 for a static edge, None for none."""
        edge = self._edges.get(_frame_name(child_frame))
        return None if edge is None else edge.stamps[-1]

    def set_transform_matrix(
        self, parent_frame: str, child_frame: str, stamp_ns: int, T_parent_child: np.ndarray, *, static: bool = False
    ) -> bool:
        """:meth:`set_transform` with a (4, 4) rigid ``T_parent_child``."""
        translation, quaternion = translation_quaternion_from_rigid(T_parent_child)
        return self.set_transform(parent_frame, child_frame, stamp_ns, translation, quaternion, static=static)

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int = LATEST_TIME) -> np.ndarray:
        """(4, 4) float64 ``T_target_source`` at ``stamp_ns`` (0 = latest common time).

        The result maps points expressed in ``source_frame`` into ``target_frame``.
        Raises LookupException, ConnectivityException or ExtrapolationException.
        """
        source_path, target_path = self._path(target_frame, source_frame)
        describe = (
            f"when looking up transform from frame [{_frame_name(source_frame)}] "
            f"to frame [{_frame_name(target_frame)}]"
        )
        if stamp_ns == LATEST_TIME:
            stamp_ns = self._latest_common_time(source_path + target_path)
        T_ancestor_source = self._compose(source_path, stamp_ns, describe)
        T_ancestor_target = self._compose(target_path, stamp_ns, describe)
        R, t = T_ancestor_target[:3, :3], T_ancestor_target[:3, 3]
        T_target_ancestor = np.eye(4)
        T_target_ancestor[:3, :3] = R.T
        T_target_ancestor[:3, 3] = -R.T @ t
        return T_target_ancestor @ T_ancestor_source

    def latest_common_time(self, target_frame: str, source_frame: str, *, held: bool = False) -> int:
        """Newest stamp at which every dynamic edge between the frames has data (0 if all are static); with
        ``held``, a sample held back as a jump counts as data (the newest received, not the newest stored)."""
        source_path, target_path = self._path(target_frame, source_frame)
        return self._latest_common_time(source_path + target_path, held)

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int = LATEST_TIME) -> bool:
        """Whether :meth:`lookup` would succeed."""
        try:
            self.lookup(target_frame, source_frame, stamp_ns)
        except TransformException:
            return False
        return True

    def root(self, frame: str) -> str:
        """Root of the tree containing ``frame``; LookupException when the frame is unknown."""
        frame = _frame_name(frame)
        if frame not in self._frames:
            raise LookupException(f'"{frame}" does not exist. Known frames: {", ".join(sorted(self._frames)) or "none"}')
        return self._ancestors(frame)[-1]

    def _check_no_loop(self, parent_frame: str, child_frame: str) -> None:
        frame = parent_frame
        while frame in self._edges:
            frame = self._edges[frame].parent
            if frame == child_frame:
                raise ValueError(
                    f"transform {parent_frame} -> {child_frame} would close a loop: "
                    f"{child_frame} is an ancestor of {parent_frame}"
                )

    def _ancestors(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain

    def _path(self, target_frame: str, source_frame: str) -> tuple[list[str], list[str]]:
        """Child frames of the edges from source up to the common ancestor, and from target up to it."""
        target_frame, source_frame = _frame_name(target_frame), _frame_name(source_frame)
        for frame, role in ((target_frame, "target"), (source_frame, "source")):
            if frame not in self._frames:
                known = ", ".join(sorted(self._frames)) or "none"
                raise LookupException(f'"{frame}" passed to lookup as {role} frame does not exist. Known frames: {known}')
        source_chain = self._ancestors(source_frame)
        target_chain = self._ancestors(target_frame)
        target_index = {frame: i for i, frame in enumerate(target_chain)}
        for i, frame in enumerate(source_chain):
            if frame in target_index:
                return source_chain[:i], target_chain[: target_index[frame]]
        raise ConnectivityException(
            f"Could not find a connection between '{target_frame}' and '{source_frame}' because they are not part "
            f"of the same tree (roots '{target_chain[-1]}' and '{source_chain[-1]}')."
        )

    def _latest_common_time(self, child_frames: list[str], held: bool = False) -> int:
        edges = [self._edges[frame] for frame in child_frames if not self._edges[frame].static]
        latest = [max(edge.stamps[-1], edge.held[0]) if held and edge.held else edge.stamps[-1] for edge in edges]
        return min(latest) if latest else LATEST_TIME

    def _compose(self, child_frames: list[str], stamp_ns: int, describe: str) -> np.ndarray:
        """``T_ancestor_first`` for the edges of ``child_frames`` (ordered from the first frame upward)."""
        T = np.eye(4)
        for frame in child_frames:
            translation, quaternion = self._edges[frame].sample(stamp_ns, describe)
            T = rigid_from_translation_quaternion(translation, quaternion) @ T
        return T


def _frame_name(frame: str) -> str:
    """Frame ids without a leading slash (tf2 style); ValueError for empty names."""
    name = str(frame).lstrip("/")
    if not name:
        raise ValueError(f"frame names must be non-empty, got {frame!r}")
    return name
