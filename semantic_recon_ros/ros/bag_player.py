"""Republishing a bag on live topics from an rclpy node (a small ``ros2 bag play``).

The bag (ROS 2, or a ROS 1 ``.bag`` file whose messages are converted to their ROS 2 equivalents, see
:mod:`~semantic_recon_ros.core.datasets.ros1_bags`) is read with ``rosbags`` (no rosbag2_py needed) and every
message is published as its serialized bytes (``publisher.publish(bytes)``), so nothing is deserialized; the
message packages must still be importable, since rclpy needs their type support to create publishers.

Timing follows the bag's log times divided by ``rate``. Topics recorded as transient-local (and
``/tf_static`` always) are published latched (transient-local, reliable, history deep enough for all
of the topic's messages); the others reliable and volatile. With ``publish_clock``, ``/clock``
(``rosgraph_msgs/Clock``) carries the bag time: before every message and at ``clock_frequency`` Hz
in between, for nodes running with ``use_sim_time``. ``topic_remaps`` publishes bag topics under other
names; ``topic_prefix`` is then prepended to every topic except ``/tf`` and ``/tf_static`` (TF consumers
listen on the global names). :meth:`BagPlayer.play`
returns at the end of the bag or when its stop event is set; a KeyboardInterrupt in the caller is
safe (nothing is left half-written).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Connection, QosDurability
from rosgraph_msgs.msg import Clock

from ..core.datasets.bag_files import open_bag
from ..core.datasets.ros1_bags import Ros1Bag
from ..core.transform_tree import NANOSECONDS_PER_SECOND
from .header_conversions import time_msg

TF_TOPICS = ("/tf", "/tf_static")
STATIC_TF_TOPIC = "/tf_static"
CLOCK_TOPIC = "/clock"


class MissingSubscribers(RuntimeError):
    """Some topic had no subscriber within ``wait_for_subscribers`` (with ``require_subscribers``)."""


@dataclass(frozen=True)
class BagPlayerConfig:
    """Options of :class:`BagPlayer`.

    Attributes:
        rate: playback speed factor (2 = twice as fast as recorded).
        publish_clock: publish the bag time on ``/clock``.
        clock_frequency: ``/clock`` messages per wall-clock second between bag messages.
        topic_remaps: (bag topic, published topic) pairs; every bag topic must be in the bag.
        topic_prefix: namespace prepended to every topic except ``/tf`` and ``/tf_static`` (e.g. "/replay").
        queue_depth: history depth of the volatile publishers.
        wait_for_subscribers: seconds to wait, before the first message, until every topic has at
            least one subscriber (0 = start at once, like ``ros2 bag play``).
        require_subscribers: when that wait times out, raise :class:`MissingSubscribers` instead of
            playing to no one.
        ack_timeout: seconds to wait at the end for reliable subscribers to acknowledge everything.
        settle_time: after every topic has a subscriber, wait this long before the first message. DDS
            discovery completes on the publisher's side first: a subscriber may not yet accept data for a
            moment after the publisher sees it, and volatile messages sent in that moment are lost.
    """

    rate: float = 1.0
    publish_clock: bool = False
    clock_frequency: float = 40.0
    topic_remaps: tuple[tuple[str, str], ...] = ()
    topic_prefix: str = ""
    queue_depth: int = 100
    wait_for_subscribers: float = 0.0
    require_subscribers: bool = False
    ack_timeout: float = 5.0
    settle_time: float = 1.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"playback rate must be positive, got {self.rate}")
        if not self.clock_frequency > 0:
            raise ValueError(f"clock_frequency must be positive, got {self.clock_frequency}")
        if self.topic_prefix and not self.topic_prefix.startswith("/"):
            raise ValueError(f"topic_prefix must be absolute (start with '/'), got {self.topic_prefix!r}")


def message_class(msgtype: str) -> type:
    """Python class of a ROS message type name such as ``sensor_msgs/msg/Image``.

    Raises ValueError when the message package (its rclpy type support) is not installed.
    """
    package, _, name = msgtype.rpartition("/")
    module_name = package.replace("/", ".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"message type {msgtype} is not installed for rclpy ({error}); install its message package"
        ) from error


def _is_latched(connection: Connection) -> bool:
    if connection.topic == STATIC_TF_TOPIC:
        return True
    profiles = getattr(connection.ext, "offered_qos_profiles", [])
    return any(profile.durability == QosDurability.TRANSIENT_LOCAL for profile in profiles)


class BagPlayer:
    """Publishes a bag's messages from ``node`` (see the module docstring).

    Args:
        node: publishers are created on this node (it does not need to spin).
        bag_path: ROS 2 bag folder (sqlite3 or mcap; without metadata.yaml it must hold one .mcap / .db3 file),
            a bare ``.mcap`` / ``.db3`` file, or a ROS 1 ``.bag`` file (its topics without a ROS 2 equivalent are
            left out, with a warning).
        config: playback options.
    """

    def __init__(self, node: Node, bag_path: str | Path, config: BagPlayerConfig = BagPlayerConfig()) -> None:
        self.node = node
        self.config = config
        self.bag_path = Path(bag_path)
        self.published: Counter[str] = Counter()
        self._reader = open_bag(self.bag_path, recover_damaged=False)
        try:
            if isinstance(self._reader, Ros1Bag) and self._reader.unreadable:
                node.get_logger().warning(f"not playing {self._reader.unreadable_text()}")
            in_bag = {connection.topic for connection in self._reader.connections}
            missing = sorted(topic for topic, _ in config.topic_remaps if topic not in in_bag)
            if missing:
                raise ValueError(f"bag {self.bag_path} has no topic {', '.join(missing)}; topics in the bag: "
                                 f"{', '.join(sorted(in_bag))}")
            counts = Counter()
            for connection in self._reader.connections:
                counts[connection.topic] += connection.msgcount
            self._publishers: dict[int, Publisher] = {}
            by_topic: dict[str, Publisher] = {}
            for connection in self._reader.connections:
                topic = self.output_topic(connection.topic)
                if topic not in by_topic:
                    by_topic[topic] = node.create_publisher(
                        message_class(connection.msgtype), topic, self._qos(connection, counts[connection.topic])
                    )
                self._publishers[connection.id] = by_topic[topic]
            self._clock = node.create_publisher(Clock, CLOCK_TOPIC, config.queue_depth) if config.publish_clock else None
        except BaseException:
            self._reader.close()
            raise

    @property
    def message_count(self) -> int:
        """Number of messages in the bag."""
        return self._reader.message_count

    @property
    def duration_s(self) -> float:
        """Recorded duration of the bag, seconds (playback takes this / rate)."""
        return self._reader.duration / NANOSECONDS_PER_SECOND

    @property
    def topics(self) -> list[str]:
        """Output topic names (after the prefix), sorted."""
        return sorted({publisher.topic_name for publisher in self._publishers.values()})

    def output_topic(self, bag_topic: str) -> str:
        """The topic a bag topic is published on (remapped, then prefixed unless it is /tf or /tf_static)."""
        topic = dict(self.config.topic_remaps).get(bag_topic, bag_topic)
        return topic if topic in TF_TOPICS else self.config.topic_prefix + topic

    def _qos(self, connection: Connection, message_count: int) -> QoSProfile:
        if _is_latched(connection):
            return QoSProfile(
                depth=max(1, message_count),
                history=HistoryPolicy.KEEP_LAST,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL,
            )
        return QoSProfile(
            depth=self.config.queue_depth,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )

    def wait_for_subscribers(self, timeout: float, stop: threading.Event) -> bool:
        """Wait until every output topic (and ``/clock`` when published) has a subscriber; False on timeout or stop."""
        deadline = time.monotonic() + timeout
        while self._unsubscribed_topics():
            if time.monotonic() >= deadline or stop.wait(0.05):
                return False
        return True

    def _unsubscribed_topics(self) -> list[str]:
        publishers = set(self._publishers.values()) | ({self._clock} if self._clock is not None else set())
        return sorted(p.topic_name for p in publishers if p.get_subscription_count() == 0)

    def _publish_clock(self, bag_time_ns: int) -> None:
        self._clock.publish(Clock(clock=time_msg(bag_time_ns)))

    def play(self, stop: threading.Event | None = None, on_message: Callable[[str], None] | None = None) -> int:
        """Publish the whole bag in real time / ``rate``; returns the number of messages published.

        Returns early (after the current message) when ``stop`` is set or the node's context is
        shut down. ``on_message(topic)`` is called after each publication (e.g. for a progress bar).
        """
        stop = stop or threading.Event()
        config = self.config
        if config.wait_for_subscribers > 0:
            waiting_since = time.monotonic()
            if self.wait_for_subscribers(config.wait_for_subscribers, stop):
                self.node.get_logger().info(
                    f"every topic has a subscriber after {time.monotonic() - waiting_since:.1f} s")
                stop.wait(config.settle_time)
            else:
                missing = ", ".join(self._unsubscribed_topics())
                if config.require_subscribers:
                    raise MissingSubscribers(f"no subscriber after {config.wait_for_subscribers:g} s on: {missing}")
                self.node.get_logger().warning(f"starting without subscribers on: {missing}")
        clock_period = 1.0 / config.clock_frequency
        start_wall, bag_start = None, None
        count = 0
        for connection, log_time, raw in self._reader.messages():
            if start_wall is None:
                start_wall, bag_start = time.monotonic(), log_time
            due = start_wall + (log_time - bag_start) / NANOSECONDS_PER_SECOND / config.rate
            while (remaining := due - time.monotonic()) > 0:
                if self._clock is not None:
                    elapsed = time.monotonic() - start_wall
                    self._publish_clock(bag_start + round(elapsed * config.rate * NANOSECONDS_PER_SECOND))
                if stop.wait(min(remaining, clock_period) if self._clock is not None else remaining):
                    return count
            if stop.is_set() or not self.node.context.ok():
                return count
            if self._clock is not None:
                self._publish_clock(log_time)
            publisher = self._publishers[connection.id]
            publisher.publish(bytes(raw))
            self.published[publisher.topic_name] += 1
            count += 1
            if on_message is not None:
                on_message(publisher.topic_name)
        self._wait_for_acks()
        return count

    def _wait_for_acks(self) -> None:
        timeout = Duration(nanoseconds=round(self.config.ack_timeout * NANOSECONDS_PER_SECOND))
        for publisher in set(self._publishers.values()):
            publisher.wait_for_all_acked(timeout)

    def close(self) -> None:
        """Close the bag and destroy the publishers."""
        for publisher in set(self._publishers.values()):
            self.node.destroy_publisher(publisher)
        if self._clock is not None:
            self.node.destroy_publisher(self._clock)
        self._publishers.clear()
        self._reader.close()
