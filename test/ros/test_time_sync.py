"""Approximate time synchronisation: the policy on synthetic stamps, and through real rclpy pub/sub."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from semantic_recon_ros.ros import time_sync  # noqa: E402
from semantic_recon_ros.ros.time_sync import ApproximateSynchronizer, SimpleFilter  # noqa: E402

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
PERIOD = 33 * MS


@dataclass
class Stamped:
    """A message with a header (the only field the synchronizer reads) and a tag for checking."""

    stamp_ns: int
    tag: tuple
    header: Header = field(init=False)

    def __post_init__(self) -> None:
        self.header = Header(stamp=Time(sec=self.stamp_ns // 1_000_000_000, nanosec=self.stamp_ns % 1_000_000_000))


def make_sync(num_inputs: int, queue_size: int = 10, slop: float = 0.010):
    sources = [SimpleFilter() for _ in range(num_inputs)]
    sync = ApproximateSynchronizer(sources, queue_size, slop)
    emitted = []
    sync.registerCallback(lambda *msgs: emitted.append(msgs))
    return sources, sync, emitted


def feed(sources, events):
    """events: (input index, message) in arrival order."""
    for index, msg in events:
        sources[index].signalMessage(msg)


def test_exports_fallback_when_message_filters_is_missing():
    try:
        import message_filters
    except ImportError:
        assert not time_sync.USING_MESSAGE_FILTERS
        assert time_sync.ApproximateTimeSynchronizer is ApproximateSynchronizer
        assert time_sync.Subscriber is time_sync.FilterSubscriber
    else:
        assert time_sync.ApproximateTimeSynchronizer is message_filters.ApproximateTimeSynchronizer


def test_jittered_streams_with_missing_messages_and_shuffled_arrival():
    rng = np.random.default_rng(0)
    n = 200
    events = []
    present = {0: set(), 1: set()}
    for i in range(n):
        for topic in (0, 1):
            if rng.random() < 0.07:  # missing message
                continue
            present[topic].add(i)
            stamp = T0 + i * PERIOD + int(rng.integers(-3 * MS, 3 * MS))
            arrival = i * PERIOD + rng.uniform(0, 25) * MS  # transport delay shuffles topics
            events.append((arrival, topic, Stamped(stamp, (topic, i))))
    events.sort(key=lambda event: event[0])
    sources, sync, emitted = make_sync(2, queue_size=5, slop=0.010)
    feed(sources, [(topic, msg) for _, topic, msg in events])

    expected = sorted(present[0] & present[1])
    assert [(a.tag[1], b.tag[1]) for a, b in emitted] == [(i, i) for i in expected]
    assert sync.emitted == len(expected)
    unmatched = len(present[0]) + len(present[1]) - 2 * len(expected)
    pending = sum(len(queue) for queue in sync._stamps)
    assert sync.dropped + pending == unmatched


def test_out_of_order_arrival_within_a_topic():
    sources, sync, emitted = make_sync(2)
    a = [Stamped(T0 + i * PERIOD, ("a", i)) for i in range(4)]
    b = [Stamped(T0 + i * PERIOD + 2 * MS, ("b", i)) for i in range(4)]
    feed(sources, [(0, a[1]), (0, a[0]), (1, b[0]), (1, b[1]), (0, a[3]), (1, b[3]), (0, a[2]), (1, b[2])])
    # a[2] and b[2] arrive after frame 3 was emitted: they are late and dropped, never emitted out of order.
    assert [(x.tag[1], y.tag[1]) for x, y in emitted] == [(0, 0), (1, 1), (3, 3)]
    assert sync.dropped == 2


def test_tightest_set_wins_and_older_candidates_are_dropped():
    sources, sync, emitted = make_sync(2, slop=0.010)
    far, near = Stamped(T0 - 9 * MS, ("b", "far")), Stamped(T0 + 2 * MS, ("b", "near"))
    feed(sources, [(1, far), (1, near), (0, Stamped(T0, ("a", 0)))])
    assert [(x.tag, y.tag) for x, y in emitted] == [(("a", 0), ("b", "near"))]
    assert sync.dropped == 1  # "far" is older than the emitted "near": can never be used


def test_slop_is_respected_and_three_inputs_synchronise():
    sources, sync, emitted = make_sync(3, slop=0.005)
    feed(sources, [(0, Stamped(T0, (0,))), (1, Stamped(T0 + 4 * MS, (1,))), (2, Stamped(T0 + 6 * MS, (2,)))])
    assert emitted == []  # spread 6 ms > slop 5 ms
    feed(sources, [(2, Stamped(T0 + 5 * MS, (2, "b")))])
    assert [tuple(m.tag for m in s) for s in emitted] == [((0,), (1,), (2, "b"))]


def test_bounded_queues_drop_oldest_when_a_topic_stalls():
    sources, sync, emitted = make_sync(2, queue_size=5)
    feed(sources, [(0, Stamped(T0 + i * PERIOD, ("a", i))) for i in range(20)])
    assert len(sync._stamps[0]) == 5 and sync.dropped == 15
    feed(sources, [(1, Stamped(T0 + 17 * PERIOD + MS, ("b", 17)))])
    assert [(x.tag[1], y.tag[1]) for x, y in emitted] == [(17, 17)]
    assert sync.dropped == 15 + 2  # a15 and a16 were older than the emitted a17


def test_each_message_is_emitted_at_most_once_and_invariants_hold():
    rng = np.random.default_rng(1)
    sources, sync, emitted = make_sync(3, queue_size=4, slop=0.012)
    received = 0
    for _ in range(3000):
        topic = int(rng.integers(0, 3))
        stamp = T0 + int(rng.integers(0, 2000)) * MS  # arbitrary order, duplicates possible
        sources[topic].signalMessage(Stamped(stamp, (topic, received)))
        received += 1
    used = [m.tag for s in emitted for m in s]
    assert len(used) == len(set(used))
    for msgs in emitted:
        stamps = [m.stamp_ns for m in msgs]
        assert max(stamps) - min(stamps) <= 12 * MS
        assert [m.tag[0] for m in msgs] == [0, 1, 2]
    for topic in range(3):
        stamps = [msgs[topic].stamp_ns for msgs in emitted]
        assert stamps == sorted(set(stamps))
    pending = sum(len(queue) for queue in sync._stamps)
    assert len(used) + sync.dropped + pending == received
    assert sync.emitted == len(emitted) > 0


def test_headerless_messages_are_dropped_unless_allowed():
    sources, sync, emitted = make_sync(2)
    feed(sources, [(0, String(data="x")), (1, String(data="y"))])
    assert emitted == [] and sync.dropped == 2
    rclpy.init()
    try:
        sources = [SimpleFilter(), SimpleFilter()]
        sync = ApproximateSynchronizer(sources, 10, 1.0, allow_headerless=True)
        got = []
        sync.registerCallback(lambda *msgs: got.append(msgs))
        feed(sources, [(0, String(data="x")), (1, String(data="y"))])
        assert [(a.data, b.data) for a, b in got] == [("x", "y")]
    finally:
        rclpy.try_shutdown()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateSynchronizer([SimpleFilter()], 0, 0.1)
    with pytest.raises(ValueError, match="slop"):
        ApproximateSynchronizer([SimpleFilter()], 5, -0.1)


def test_synchronizes_real_topics_in_one_process():
    """Subscriber + ApproximateTimeSynchronizer on real DDS topics (images and camera infos with jitter)."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(np.random.default_rng().integers(100, 200)))
    try:
        talker = rclpy.create_node("sync_talker", context=context)
        listener = rclpy.create_node("sync_listener", context=context)
        image_pub = talker.create_publisher(Image, "camera/color/image_raw", 50)
        info_pub = talker.create_publisher(CameraInfo, "camera/color/camera_info", 50)
        image_sub = time_sync.Subscriber(listener, Image, "camera/color/image_raw", qos_profile=50)
        info_sub = time_sync.Subscriber(listener, CameraInfo, "camera/color/camera_info", qos_profile=50)
        assert image_sub.getTopic() == "camera/color/image_raw" and image_sub.topic_name == "/camera/color/image_raw"
        sync = time_sync.ApproximateTimeSynchronizer([image_sub, info_sub], queue_size=10, slop=0.008)
        pairs = []
        done = threading.Event()

        def on_pair(image, info, tag):
            pairs.append((image.header.frame_id, info.header.frame_id, tag))
            if len(pairs) == 27:
                done.set()

        sync.registerCallback(on_pair, "extra-arg")
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        deadline = time.monotonic() + 10
        while (image_pub.get_subscription_count() == 0 or info_pub.get_subscription_count() == 0) and time.monotonic() < deadline:
            time.sleep(0.02)

        rng = np.random.default_rng(2)
        skipped_info = {5, 17, 22}
        for i in range(30):
            stamp = T0 + i * PERIOD
            image = Image(height=2, width=2, encoding="mono8", step=2, data=bytes(4))
            image.header = Stamped(stamp + int(rng.integers(-2 * MS, 2 * MS)), ()).header
            image.header.frame_id = str(i)
            image_pub.publish(image)
            if i not in skipped_info:
                info = CameraInfo()
                info.header = Stamped(stamp + int(rng.integers(-2 * MS, 2 * MS)), ()).header
                info.header.frame_id = str(i)
                info_pub.publish(info)
            time.sleep(0.005)
        assert done.wait(10), f"only {len(pairs)} pairs"
        expected = [str(i) for i in range(30) if i not in skipped_info]
        assert [image for image, _, _ in pairs] == expected
        assert all(image == info and tag == "extra-arg" for image, info, tag in pairs)
        executor.shutdown()
        spinner.join(timeout=5)
    finally:
        rclpy.try_shutdown(context=context)
