"""Approximate time synchronisation of topics: message_filters when installed, else a compatible fallback.

Exports ``Subscriber`` and ``ApproximateTimeSynchronizer`` -- from ``message_filters`` when it
imports (``USING_MESSAGE_FILTERS``), otherwise :class:`FilterSubscriber` and
:class:`ApproximateSynchronizer` with the same constructor signatures:
``Subscriber(node, msg_type, topic, qos_profile=10, **create_subscription_kwargs)`` and
``ApproximateTimeSynchronizer(subscribers, queue_size, slop, allow_headerless=False)``, each with
``registerCallback(callback, *args)``; :class:`GateFilter` chains between the two with either.

Fallback policy (:class:`ApproximateSynchronizer`), per arriving message with header stamp ``s``:

1. A message not newer than the last one its input contributed to an emitted set is dropped:
   ``duplicate_stamp`` when ``s`` equals that stamp, ``out_of_order`` when it is older by at most
   ``max_lateness`` (default 1 s). Older still, the stamps jumped back (a clock reset, a bag restarted, or
   the last set was mis-stamped, e.g. an hour ahead): the input forgets its last emitted stamp and the
   message goes on, so no single stamp can block an input for longer than ``max_lateness`` of stamps.
2. It joins its input's queue, ordered by stamp (an equal stamp replaces the queued message, which is
   dropped as ``duplicate_stamp``); a queue longer than ``queue_size`` drops its oldest message
   (``unpaired``).
3. Among sets made of this message and one queued message per other input whose stamps all lie
   within ``slop`` seconds of each other, the set with the smallest stamp spread is emitted
   (callback receives the messages in input order).
4. The emitted messages leave their queues together with every older message of those queues
   (``unpaired``: they can no longer be used, each message is emitted at most once, in stamp order).

``drops`` counts the messages discarded without being emitted by reason (``unpaired``,
``out_of_order``, ``duplicate_stamp``, ``no_stamp`` for headerless ones), ``dropped`` is their sum,
``pending`` the messages still queued, ``emitted`` the sets delivered and ``restarts`` the inputs restarted
by a jump back (each logged, throttled). So ``received == inputs * emitted + dropped + pending``. The
real message_filters counts nothing: :func:`synchronizer_drops` reports its unused messages as
``unpaired``. The synchronizer is thread-safe; callbacks run under its lock, so keep them short.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rclpy.clock import ROSClock
from rclpy.logging import get_logger
from rclpy.node import Node

from ..core.ros_message_codec import stamp_to_ns

DEFAULT_SUBSCRIBER_DEPTH = 10
DEFAULT_MAX_LATENESS_S = 1.0  # see ApproximateSynchronizer
WARNING_PERIOD_S = 5.0  # per kind of warning of the fallback synchronizer


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


class GateFilter(SimpleFilter):
    """Passes on the messages of ``source`` for which ``accept(msg, *args)`` is true, and no others.

    A message_filters-style filter (``registerCallback`` / ``signalMessage``), so it chains between a
    ``Subscriber`` and either synchronizer: the mapping node drops messages with implausible stamps here,
    before they can reach (and mislead) the synchronizer.
    """

    def __init__(self, source: Any, accept: Callable[..., bool], *args: Any) -> None:
        super().__init__()
        self.accept = accept
        self.args = args
        self.connection = source.registerCallback(self.add)

    def add(self, msg: Any) -> None:
        if self.accept(msg, *self.args):
            self.signalMessage(msg)


class ApproximateSynchronizer(SimpleFilter):
    """Emits sets of messages, one per input, whose header stamps lie within ``slop`` seconds.

    Args:
        fs: input filters (e.g. subscribers), each with ``registerCallback``.
        queue_size: messages kept per input while waiting for partners (>= 1).
        slop: largest allowed stamp spread in a set, seconds (>= 0).
        allow_headerless: stamp messages without ``header.stamp`` with the current ROS time
            instead of dropping them.
        max_lateness: seconds (>= 0) a message may be older than the last set emitted from its input and
            still count as late (dropped, ``out_of_order``); older still, the stamps jumped back and the
            input starts afresh (see the module docstring).
    """

    def __init__(self, fs: Sequence[SimpleFilter], queue_size: int, slop: float, allow_headerless: bool = False,
                 max_lateness: float = DEFAULT_MAX_LATENESS_S) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        if max_lateness < 0:
            raise ValueError(f"max_lateness must be >= 0 seconds, got {max_lateness}")
        self.queue_size = int(queue_size)
        self.slop_ns = round(slop * 1e9)
        self.max_lateness_ns = round(max_lateness * 1e9)
        self.allow_headerless = allow_headerless
        self.lock = threading.Lock()
        self.drops: Counter[str] = Counter()
        self.emitted = 0
        self.restarts = 0
        self._last_warning: dict[str, float] = {}
        self.connectInput(fs)

    @property
    def dropped(self) -> int:
        """Messages discarded without being emitted, every reason."""
        with self.lock:
            return sum(self.drops.values())

    @property
    def pending(self) -> int:
        """Messages waiting in the queues for partners."""
        with self.lock:
            return sum(len(stamps) for stamps in self._stamps)

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
                self.drops["no_stamp"] += 1
                return
            if self._admit(index, stamp) and self._enqueue(msg, index, stamp):
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

    def _admit(self, index: int, stamp: int) -> bool:
        """False (counted) for a message not newer than the last one its input contributed to a set; restarts
        the input when the message is older than that by more than max_lateness."""
        last = self._last_emitted[index]
        if last is None or stamp > last:
            return True
        if stamp == last:
            self.drops["duplicate_stamp"] += 1
            return False
        if last - stamp <= self.max_lateness_ns:
            self.drops["out_of_order"] += 1
            self._warn("out_of_order", f"input {index}: a message stamped {stamp / 1e9:.3f} s arrived after the set "
                                       f"of {last / 1e9:.3f} s; dropped (out_of_order)")
            return False
        self._last_emitted[index] = None
        self.restarts += 1
        self._warn("restart", f"input {index}: stamps jumped back {(last - stamp) / 1e9:.3f} s from the last "
                              f"synchronized set (more than max_lateness); the input starts afresh")
        return True

    def _warn(self, kind: str, text: str) -> None:
        """A warning of the ``time_sync`` logger, at most one per kind every WARNING_PERIOD_S (wall time)."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -WARNING_PERIOD_S) >= WARNING_PERIOD_S:
            self._last_warning[kind] = now
            get_logger("time_sync").warning(f"{text} [further '{kind}' warnings throttled]")

    def _enqueue(self, msg: Any, index: int, stamp: int) -> bool:
        """Insert into the input's queue; False when the message is dropped on arrival."""
        stamps, messages = self._stamps[index], self._messages[index]
        position = bisect.bisect_left(stamps, stamp)
        if position < len(stamps) and stamps[position] == stamp:
            messages[position] = msg
            self.drops["duplicate_stamp"] += 1  # the queued message with this stamp is replaced
        else:
            stamps.insert(position, stamp)
            messages.insert(position, msg)
        if len(stamps) > self.queue_size:
            del stamps[0], messages[0]
            self.drops["unpaired"] += 1
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
            if position:  # older messages of this input can no longer be used
                self.drops["unpaired"] += position
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


def synchronizer_drops(synchronizer: Any, offered: int, used: int) -> tuple[dict[str, int], int]:
    """(messages dropped by reason, messages still queued) of either synchronizer.

    Args:
        synchronizer: an :class:`ApproximateSynchronizer` (which counts its drops) or message_filters'
            synchronizer (which does not: every offered message not used in a set is ``unpaired``, the
            queued ones included, and 0 are reported queued).
        offered: messages fed to the synchronizer, every input together.
        used: messages in the sets it emitted (inputs * sets).
    """
    if isinstance(synchronizer, ApproximateSynchronizer):
        with synchronizer.lock:
            drops = {reason: count for reason, count in synchronizer.drops.items() if count}
            pending = sum(len(stamps) for stamps in synchronizer._stamps)
        return drops, pending
    unused = offered - used
    return ({"unpaired": unused} if unused > 0 else {}), 0
