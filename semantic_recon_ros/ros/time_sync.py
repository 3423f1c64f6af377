"""Approximate time synchronisation of topics: message_filters when installed, else a compatible fallback.

Exports ``Subscriber`` and ``ApproximateTimeSynchronizer`` -- from ``message_filters`` when it
imports (``USING_MESSAGE_FILTERS``), otherwise :class:`FilterSubscriber` and
:class:`ApproximateSynchronizer` with the same constructor signatures:
``Subscriber(node, msg_type, topic, qos_profile=10, **create_subscription_kwargs)`` and
``ApproximateTimeSynchronizer(subscribers, queue_size, slop, allow_headerless=False)``, each with
``registerCallback(callback, *args)``.

Fallback policy (:class:`ApproximateSynchronizer`), per arriving message with header stamp ``s``:

1. It joins its input's queue, ordered by stamp (an equal stamp replaces the queued message). A
   message older than the last one this input contributed to an emitted set is dropped, and a
   queue longer than ``queue_size`` drops its oldest message.
2. Among sets made of this message and one queued message per other input whose stamps all lie
   within ``slop`` seconds of each other, the set with the smallest stamp spread is emitted
   (callback receives the messages in input order).
3. The emitted messages leave their queues together with every older message of those queues
   (they can no longer be used: each message is emitted at most once, in stamp order).

``dropped`` counts messages discarded without being emitted, ``emitted`` the sets delivered. The
real message_filters has neither counter: to count drops portably, compare received and emitted
messages in the node. The synchronizer is thread-safe; callbacks run under its lock, so keep them short.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rclpy.clock import ROSClock
from rclpy.logging import get_logger
from rclpy.node import Node

from ..core.ros_message_codec import stamp_to_ns

DEFAULT_SUBSCRIBER_DEPTH = 10


class SimpleFilter:
    """A message source that forwards what it outputs to registered callbacks (message_filters API)."""

    def __init__(self) -> None:
        self.callbacks: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}

    def registerCallback(self, callback: Callable[..., Any], *args: Any) -> int:  # noqa: N802 (message_filters name)
        """Call ``callback(*output, *args)`` for every output; returns a connection id."""
        connection = len(self.callbacks)
        self.callbacks[connection] = (callback, args)
        return connection

    def signalMessage(self, *msgs: Any) -> None:  # noqa: N802 (message_filters name)
        for callback, args in list(self.callbacks.values()):
            callback(*(msgs + args))


class FilterSubscriber(SimpleFilter):
    """A ROS subscription as a filter source; arguments as ``node.create_subscription`` minus the callback.

    Attributes of the underlying subscription are reachable through this object (``.sub``).
    """

    def __init__(
        self, node: Node, msg_type: type, topic: str, qos_profile: Any = DEFAULT_SUBSCRIBER_DEPTH, **kwargs: Any
    ) -> None:
        super().__init__()
        self.node = node
        self.topic = topic
        self.sub = node.create_subscription(msg_type, topic, self.callback, qos_profile, **kwargs)

    def callback(self, msg: Any) -> None:
        self.signalMessage(msg)

    def getTopic(self) -> str:  # noqa: N802 (message_filters name)
        return self.topic

    def __getattr__(self, name: str) -> Any:
        if name == "sub":
            raise AttributeError(name)
        return getattr(self.sub, name)


class ApproximateSynchronizer(SimpleFilter):
    """Emits sets of messages, one per input, whose header stamps lie within ``slop`` seconds.

    Args:
        fs: input filters (e.g. subscribers), each with ``registerCallback``.
        queue_size: messages kept per input while waiting for partners (>= 1).
        slop: largest allowed stamp spread in a set, seconds (>= 0).
        allow_headerless: stamp messages without ``header.stamp`` with the current ROS time
            instead of dropping them.
    """

    def __init__(self, fs: Sequence[SimpleFilter], queue_size: int, slop: float, allow_headerless: bool = False) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        self.queue_size = int(queue_size)
        self.slop_ns = round(slop * 1e9)
        self.allow_headerless = allow_headerless
        self.lock = threading.Lock()
        self.dropped = 0
        self.emitted = 0
        self.connectInput(fs)

    def connectInput(self, fs: Sequence[SimpleFilter]) -> None:  # noqa: N802 (message_filters name)
        self._stamps: list[list[int]] = [[] for _ in fs]
        self._messages: list[list[Any]] = [[] for _ in fs]
        self._last_emitted: list[int | None] = [None for _ in fs]
        self.input_connections = [f.registerCallback(self.add, index) for index, f in enumerate(fs)]

    def add(self, msg: Any, index: int) -> None:
        """Feed ``msg`` arriving on input ``index``; emits a set when one completes."""
        stamp = self._stamp(msg)
        with self.lock:
            if stamp is None:
                self.dropped += 1
                return
            if self._enqueue(msg, index, stamp):
                chosen = self._best_set(index, stamp)
                if chosen is not None:
                    self._emit(chosen)

    def _stamp(self, msg: Any) -> int | None:
        stamp = getattr(getattr(msg, "header", None), "stamp", None)
        if stamp is not None:
            return stamp_to_ns(stamp)
        if self.allow_headerless:
            return ROSClock().now().nanoseconds
        get_logger("time_sync").warning(
            f"dropping a {type(msg).__name__} without header stamp (allow_headerless is False)", once=True
        )
        return None

    def _enqueue(self, msg: Any, index: int, stamp: int) -> bool:
        """Insert into the input's queue; False when the message is dropped on arrival."""
        last = self._last_emitted[index]
        if last is not None and stamp <= last:
            self.dropped += 1
            return False
        stamps, messages = self._stamps[index], self._messages[index]
        position = bisect.bisect_left(stamps, stamp)
        if position < len(stamps) and stamps[position] == stamp:
            messages[position] = msg
            self.dropped += 1
        else:
            stamps.insert(position, stamp)
            messages.insert(position, msg)
        if len(stamps) > self.queue_size:
            del stamps[0], messages[0]
            self.dropped += 1
            if position == 0:
                return False
        return True

    def _best_set(self, index: int, stamp: int) -> list[int] | None:
        """Queue positions (one per input) of the tightest set containing ``stamp`` on ``index``, or None.

        Every feasible set has a smallest stamp ``m`` in ``[stamp - slop, stamp]``; for a given ``m``
        the tightest choice takes from each input its earliest stamp >= ``m``.
        """
        window_starts = {stamp}
        for other, stamps in enumerate(self._stamps):
            if other != index:
                low = bisect.bisect_left(stamps, stamp - self.slop_ns)
                high = bisect.bisect_right(stamps, stamp)
                window_starts.update(stamps[low:high])
        best, best_spread = None, None
        for start in sorted(window_starts):
            positions = []
            for other, stamps in enumerate(self._stamps):
                if other == index:
                    positions.append(bisect.bisect_left(stamps, stamp))
                    continue
                position = bisect.bisect_left(stamps, start)
                if position == len(stamps) or stamps[position] > start + self.slop_ns:
                    break
                positions.append(position)
            else:
                spread = max(self._stamps[i][p] for i, p in enumerate(positions)) - start
                if best_spread is None or spread < best_spread:
                    best, best_spread = positions, spread
        return best

    def _emit(self, positions: list[int]) -> None:
        msgs = []
        for index, position in enumerate(positions):
            msgs.append(self._messages[index][position])
            self._last_emitted[index] = self._stamps[index][position]
            self.dropped += position  # older messages of this input can no longer be used
            del self._stamps[index][: position + 1], self._messages[index][: position + 1]
        self.emitted += 1
        self.signalMessage(*msgs)


try:
    import message_filters
except ImportError:
    message_filters = None

USING_MESSAGE_FILTERS = message_filters is not None
if USING_MESSAGE_FILTERS:
    Subscriber = message_filters.Subscriber
    ApproximateTimeSynchronizer = message_filters.ApproximateTimeSynchronizer
else:
    Subscriber = FilterSubscriber
    ApproximateTimeSynchronizer = ApproximateSynchronizer
