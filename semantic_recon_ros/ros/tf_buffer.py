"""TF for the node: tf2_ros when it is installed, otherwise an API-compatible buffer over :class:`TransformTree`.

Exports ``Buffer``, ``TransformListener`` and the exceptions ``TransformException``,
``LookupException``, ``ConnectivityException``, ``ExtrapolationException`` -- from ``tf2_ros`` when
it imports (a ROS 2 install), else :class:`TransformTreeBuffer`, :class:`TransformTreeListener` and the
exceptions of :mod:`semantic_recon_ros.core.transform_tree`. ``USING_TF2_ROS`` says which.

The fallback implements the subset of the tf2_ros API the mapping node uses:
``Buffer(cache_time=None, node=None)``, ``lookup_transform(target, source, time, timeout=Duration())``
returning a ``geometry_msgs/TransformStamped`` ``T_target_source`` (``time`` an ``rclpy.time.Time`` or a
``builtin_interfaces/Time``; zero = latest common time), ``can_transform(...)``,
``set_transform(msg, authority)``, ``set_transform_static(msg, authority)``, ``clear()``; and
``TransformListener(buffer, node, *, spin_thread=False, qos=None, static_qos=None, ...)`` subscribing
``/tf`` (volatile, depth 100) and ``/tf_static`` (transient-local, reliable, depth 100) with
``tf2_msgs/TFMessage``. Unlike tf2, one transform stamped far from its frame's history (e.g. an hour
ahead) does not wipe that history: unless it lies near the node's clock, it is held back until the next one
confirms the jump, else discarded (``discarded_transforms``; a throttled warning either way; see
:mod:`~semantic_recon_ros.core.transform_tree`).

:func:`lookup_transform_unless_futile` (either buffer) waits for missing TF only while it can still come.

Threading: a lookup with a timeout waits on a condition variable that the listener's callbacks
notify. The waiting thread must therefore not be the thread that runs those callbacks: look up
from a worker thread (what the mapping node does), spin the listener in its own thread
(``spin_thread=True``), or use a ``MultiThreadedExecutor`` (the listener's subscriptions are in a
reentrant callback group). Looked up from a callback of a single-threaded executor spinning the same
node, a lookup cannot see new transforms and simply fails when its timeout expires.
"""

from __future__ import annotations

import threading
import time as wall_time
from typing import Any

from geometry_msgs.msg import TransformStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from tf2_msgs.msg import TFMessage

from ..core.ros_message_codec import add_transform_stamped, stamp_to_ns
from ..core.transform_tree import (
    DEFAULT_CACHE_DURATION_NS,
    LATEST_TIME,
    ConnectivityException as TreeConnectivityException,
    ExtrapolationException as TreeExtrapolationException,
    LookupException as TreeLookupException,
    TransformException as TreeTransformException,
    TransformTree,
)
from .transform_conversions import matrix_to_transform_stamped

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
TF_QUEUE_DEPTH = 100
WARNING_PERIOD_S = 5.0  # between warnings about held-back transforms


def _time_to_ns(time: Any) -> int:
    """``rclpy.time.Time`` (``.nanoseconds``) or ``builtin_interfaces/Time`` -> nanoseconds."""
    return int(time.nanoseconds) if hasattr(time, "nanoseconds") else stamp_to_ns(time)


class TransformTreeBuffer:
    """tf2_ros-compatible ``Buffer`` backed by :class:`TransformTree` (see the module docstring).

    Thread-safe: transforms may be added from executor callbacks while other threads look up.

    Args:
        cache_time: history kept per dynamic transform (default 10 s).
        node: its clock vouches for transforms stamped near it, which are stored at once even when they jump
            away from their frame's history (see :mod:`~semantic_recon_ros.core.transform_tree`); tf2_ros
            also offers a frame-graph service with it, the fallback does not.
    """

    def __init__(self, cache_time: Duration | None = None, node: Node | None = None) -> None:
        cache_ns = DEFAULT_CACHE_DURATION_NS if cache_time is None else int(cache_time.nanoseconds)
        clock = None if node is None else (lambda: node.get_clock().now().nanoseconds)
        self._tree = TransformTree(cache_ns, clock)
        self._condition = threading.Condition()
        self._last_warning = -WARNING_PERIOD_S
        self.invalid_transforms = 0  # refused as not rigid (non-finite, zero quaternion, bad frames)

    @property
    def discarded_transforms(self) -> int:
        """Dynamic transforms held back as too far from their frame's history and never confirmed."""
        with self._condition:
            return self._tree.discarded_samples

    def set_transform(self, transform: TransformStamped, authority: str) -> bool:
        """Add a dynamic ``TransformStamped``; False (with a logged reason) when it is invalid or held back as
        stamped far from its frame's history."""
        return self._store(transform, authority, static=False)

    def set_transform_static(self, transform: TransformStamped, authority: str) -> bool:
        """Add a static ``TransformStamped`` (valid at every time)."""
        return self._store(transform, authority, static=True)

    def _store(self, transform: TransformStamped, authority: str, *, static: bool) -> bool:
        try:
            with self._condition:
                stored = add_transform_stamped(self._tree, transform, static=static)
                newest = self._tree.newest_stamp(transform.child_frame_id)
                self._condition.notify_all()
        except ValueError as error:
            with self._condition:
                self.invalid_transforms += 1
            get_logger("tf_buffer").error(f"ignoring transform from {authority!r}: {error} ({self.invalid_transforms} "
                                          f"invalid so far)", throttle_duration_sec=WARNING_PERIOD_S)
            return False
        if not stored:
            self._warn_held(transform, newest, authority)
        return stored

    def _warn_held(self, transform: TransformStamped, newest_ns: int, authority: str) -> None:
        """Warn (at most every WARNING_PERIOD_S) that ``transform`` was held back as a jump."""
        now = wall_time.monotonic()
        if now - self._last_warning < WARNING_PERIOD_S:
            return
        self._last_warning = now
        stamp_ns = stamp_to_ns(transform.header.stamp)
        get_logger("tf_buffer").warning(
            f"holding back transform {transform.header.frame_id} -> {transform.child_frame_id} from {authority!r} "
            f"stamped {stamp_ns / 1e9:.3f} s, {(stamp_ns - newest_ns) / 1e9:+.3f} s from the newest one: stored only "
            f"if the next one confirms the jump, else discarded ({self.discarded_transforms} so far; further "
            f"warnings throttled)")

    def clear(self) -> None:
        """Forget every transform."""
        with self._condition:
            self._tree.clear()

    def _wait(self, target_frame: str, source_frame: str, stamp_ns: int, timeout: Duration) -> None:
        """Block the calling thread until the transform is available or ``timeout`` has passed."""
        deadline = wall_time.monotonic() + timeout.nanoseconds / 1e9
        with self._condition:
            while not self._tree.can_transform(target_frame, source_frame, stamp_ns):
                remaining = deadline - wall_time.monotonic()
                if remaining <= 0:
                    return
                self._condition.wait(remaining)

    def can_transform(
        self,
        target_frame: str,
        source_frame: str,
        time: Any,
        timeout: Duration = Duration(),
        return_debug_tuple: bool = False,
    ) -> bool | tuple[bool, str]:
        """Whether ``lookup_transform`` would succeed, waiting up to ``timeout`` for the data.

        With ``return_debug_tuple`` returns ``(ok, error message or '')`` like tf2_ros.
        """
        stamp_ns = _time_to_ns(time)
        self._wait(target_frame, source_frame, stamp_ns, timeout)
        try:
            with self._condition:
                self._tree.lookup(target_frame, source_frame, stamp_ns)
        except TreeTransformException as error:
            return (False, str(error)) if return_debug_tuple else False
        return (True, "") if return_debug_tuple else True

    def latest_received_time(self, target_frame: str, source_frame: str) -> int:
        """Newest stamp (ns) for which every dynamic transform between the frames was received, stored or held
        back as a jump (0 if all are static); raises LookupException or ConnectivityException."""
        with self._condition:
            return self._tree.latest_common_time(target_frame, source_frame, held=True)

    def lookup_transform(
        self, target_frame: str, source_frame: str, time: Any, timeout: Duration = Duration()
    ) -> TransformStamped:
        """``T_target_source`` at ``time`` as a TransformStamped (``frame_id`` = target, child = source).

        Waits up to ``timeout`` for missing data (see the module docstring about threads), then
        raises LookupException, ConnectivityException or ExtrapolationException. For time zero the
        header carries the latest common time used.
        """
        stamp_ns = _time_to_ns(time)
        self._wait(target_frame, source_frame, stamp_ns, timeout)
        with self._condition:
            if stamp_ns == LATEST_TIME:
                stamp_ns = self._tree.latest_common_time(target_frame, source_frame)
            T_target_source = self._tree.lookup(target_frame, source_frame, stamp_ns)
        return matrix_to_transform_stamped(T_target_source, stamp_ns, target_frame, source_frame)


class TransformTreeListener:
    """tf2_ros-compatible ``TransformListener`` filling a buffer from ``/tf`` and ``/tf_static``.

    Args:
        buffer: receives every transform (``set_transform`` / ``set_transform_static``).
        node: node owning the subscriptions; None creates a private one.
        spin_thread: spin ``node`` in a dedicated thread with its own executor.
        qos / static_qos: profile or history depth for ``/tf`` / ``/tf_static`` (defaults as tf2_ros).
        tf_topic / tf_static_topic: topic names.
        static_only: subscribe only to ``/tf_static``.
    """

    def __init__(
        self,
        buffer: TransformTreeBuffer,
        node: Node | None,
        *,
        spin_thread: bool = False,
        qos: QoSProfile | int | None = None,
        static_qos: QoSProfile | int | None = None,
        tf_topic: str = TF_TOPIC,
        tf_static_topic: str = TF_STATIC_TOPIC,
        static_only: bool = False,
    ) -> None:
        self.buffer = buffer
        if node is None:
            node = Node(f"transform_listener_impl_{id(self):x}", enable_rosout=False, start_parameter_services=False)
        self.node = node
        self.group = ReentrantCallbackGroup()
        if static_qos is None:
            static_qos = QoSProfile(
                depth=TF_QUEUE_DEPTH,
                history=HistoryPolicy.KEEP_LAST,
                durability=DurabilityPolicy.TRANSIENT_LOCAL,
                reliability=ReliabilityPolicy.RELIABLE,
            )
        self.tf_sub = None
        if not static_only:
            if qos is None:
                qos = QoSProfile(
                    depth=TF_QUEUE_DEPTH, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE
                )
            self.tf_sub = node.create_subscription(TFMessage, tf_topic, self.callback, qos, callback_group=self.group)
        self.tf_static_sub = node.create_subscription(
            TFMessage, tf_static_topic, self.static_callback, static_qos, callback_group=self.group
        )
        self.executor: SingleThreadedExecutor | None = None
        self.dedicated_listener_thread: threading.Thread | None = None
        if spin_thread:
            self.executor = SingleThreadedExecutor()
            self.executor.add_node(node)
            self.dedicated_listener_thread = threading.Thread(target=self._spin, name="tf_listener", daemon=True)
            self.dedicated_listener_thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def callback(self, msg: TFMessage) -> None:
        for transform in msg.transforms:
            self.buffer.set_transform(transform, "default_authority")

    def static_callback(self, msg: TFMessage) -> None:
        for transform in msg.transforms:
            self.buffer.set_transform_static(transform, "default_authority")

    def unregister(self) -> None:
        """Stop the dedicated thread (if any) and destroy the subscriptions."""
        if self.executor is not None:
            self.executor.shutdown()
            self.dedicated_listener_thread.join()
            self.executor = None
        if self.tf_sub is not None:
            self.node.destroy_subscription(self.tf_sub)
            self.tf_sub = None
        if self.tf_static_sub is not None:
            self.node.destroy_subscription(self.tf_static_sub)
            self.tf_static_sub = None


try:
    import tf2_ros
except ImportError:
    tf2_ros = None

USING_TF2_ROS = tf2_ros is not None
if USING_TF2_ROS:
    Buffer = tf2_ros.Buffer
    TransformListener = tf2_ros.TransformListener
    TransformException = tf2_ros.TransformException
    LookupException = tf2_ros.LookupException
    ConnectivityException = tf2_ros.ConnectivityException
    ExtrapolationException = tf2_ros.ExtrapolationException
else:
    Buffer = TransformTreeBuffer
    TransformListener = TransformTreeListener
    TransformException = TreeTransformException
    LookupException = TreeLookupException
    ConnectivityException = TreeConnectivityException
    ExtrapolationException = TreeExtrapolationException


def lookup_transform_unless_futile(buffer: Any, target_frame: str, source_frame: str, time: Any,
                                   timeout: Duration, max_lag: Duration) -> TransformStamped:
    """``buffer.lookup_transform(target_frame, source_frame, time)``, waiting up to ``timeout`` for missing TF
    only while it can still arrive in time (either ``Buffer``).

    Raises the lookup's exception at once, without waiting, when a frame was never received or the two
    are not connected, when ``time`` is older than the stored history, or when the newest transform
    received between the frames (their latest common time; with the fallback buffer, transforms held back
    as jumps count: the next one may confirm them) is more than ``max_lag`` older than ``time``: then the
    TF source is stalled or far behind, and a wait would only hold up the frames behind this one.
    """
    try:
        return buffer.lookup_transform(target_frame, source_frame, time)
    except ExtrapolationException as error:
        if timeout.nanoseconds <= 0:
            raise
        requested_ns = _time_to_ns(time)
        stored_ns = _time_to_ns(buffer.lookup_transform(target_frame, source_frame, Time()).header.stamp)
        if requested_ns <= stored_ns:
            raise ExtrapolationException(f"{error} (older than the stored history: not waiting)") from None
        received_ns = (buffer.latest_received_time(target_frame, source_frame)
                       if isinstance(buffer, TransformTreeBuffer) else stored_ns)
        lag_ns = requested_ns - received_ns
        if lag_ns > max_lag.nanoseconds:
            raise ExtrapolationException(f"{error} (the newest transform is {lag_ns / 1e9:.3f} s older, more than "
                                         f"{max_lag.nanoseconds / 1e9:g} s: not waiting)") from None
    return buffer.lookup_transform(target_frame, source_frame, time, timeout=timeout)
