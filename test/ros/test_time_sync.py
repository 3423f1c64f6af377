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
from semantic_recon_ros.ros.time_sync import (  # noqa: E402
    ApproximateSynchronizer,
    GateFilter,
    SimpleFilter,
    synchronizer_drops,
)

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


def make_sync(num_inputs: int, queue_size: int = 10, slop: float = 0.010, **options):
    sources = [SimpleFilter() for _ in range(num_inputs)]
    sync = ApproximateSynchronizer(sources, queue_size, slop, **options)
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
    assert len(sync._stamps[0]) == 5 and sync.drops == {"unpaired": 15}
    feed(sources, [(1, Stamped(T0 + 17 * PERIOD + MS, ("b", 17)))])
    assert [(x.tag[1], y.tag[1]) for x, y in emitted] == [(17, 17)]
    assert sync.drops == {"unpaired": 15 + 2}  # a15 and a16 were older than the emitted a17


@pytest.mark.parametrize("max_lateness", [3.0, 1.0])
def test_each_message_is_emitted_at_most_once_and_invariants_hold(max_lateness):
    """Stamps over 2 s in arbitrary order: with max_lateness beyond that span every input emits in stamp order;
    with the default 1 s, inputs restart on jumps back, and every message is still emitted at most once or
    counted."""
    rng = np.random.default_rng(1)
    sources, sync, emitted = make_sync(3, queue_size=4, slop=0.012, max_lateness=max_lateness)
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
    if max_lateness > 2:
        assert sync.restarts == 0
        for topic in range(3):
            stamps = [msgs[topic].stamp_ns for msgs in emitted]
            assert stamps == sorted(set(stamps))
    else:
        assert sync.restarts > 0
    assert len(used) + sync.dropped + sync.pending == received
    assert set(sync.drops) <= {"unpaired", "out_of_order", "duplicate_stamp"}
    assert sync.emitted == len(emitted) > 0


# --- one bad stamp must never stop the synchronizer; every discarded message is counted by reason ---------------

def camera_sets(first: int, count: int, offset_ns: int = 0, skip: tuple[int, ...] = ()) -> list:
    """(input, message) events of ``count`` color / depth / camera_info sets at 30 Hz, stamps jittered by up to
    2 ms, tagged (input, frame index); ``skip`` leaves the depth image of those frames out."""
    events = []
    for i in range(first, first + count):
        stamp = T0 + offset_ns + i * PERIOD
        for topic, jitter in enumerate((0, 2 * MS, -MS)):
            if not (topic == 1 and i in skip):
                events.append((topic, Stamped(stamp + jitter, (topic, i))))
    return events


def emitted_frames(emitted) -> list[int]:
    assert all(len({m.tag[1] for m in s}) == 1 for s in emitted), "a set mixes frames"
    return [s[0].tag[1] for s in emitted]


def accounted(sync, received: int) -> bool:
    return 3 * sync.emitted + sync.dropped + sync.pending == received


@pytest.mark.parametrize("ahead_s", [3600, 4])
def test_a_set_stamped_in_the_future_does_not_block_later_sets(ahead_s):
    """Measured in the node before: after one set stamped +3600 s every later set was discarded (300 of 300), after
    +4 s the next 65, uncounted. Now the first valid message of each input restarts it: nothing is lost."""
    sources, sync, emitted = make_sync(3)
    feed(sources, camera_sets(0, 10))
    feed(sources, camera_sets(10, 1, offset_ns=ahead_s * 1_000_000_000))
    feed(sources, camera_sets(11, 300))
    assert emitted_frames(emitted) == list(range(311))
    assert sync.restarts == 3 and sync.dropped == 0 and accounted(sync, 3 * 311)


@pytest.mark.parametrize("behind_s", [3600, 6])
def test_a_set_stamped_in_the_past_is_emitted_alone_and_later_sets_go_on(behind_s):
    """Stamps an hour or 6 s old: the inputs restart (the stamps jumped back), the old set is emitted on its own
    (the node drops it by age before synchronization), and the valid sets after it are all emitted."""
    sources, sync, emitted = make_sync(3)
    feed(sources, camera_sets(0, 10))
    feed(sources, camera_sets(10, 1, offset_ns=-behind_s * 1_000_000_000))
    feed(sources, camera_sets(11, 20))
    assert emitted_frames(emitted) == list(range(31))
    assert sync.restarts == 3 and sync.dropped == 0 and accounted(sync, 3 * 31)


def test_late_messages_within_max_lateness_are_counted_as_out_of_order():
    sources, sync, emitted = make_sync(3)
    feed(sources, camera_sets(0, 10))
    feed(sources, camera_sets(3, 1))  # frame 3 once more, 0.23 s late: out of order
    feed(sources, [(0, Stamped(T0 + 9 * PERIOD, ("again", 9)))])  # the stamp of the last set: a duplicate
    feed(sources, camera_sets(10, 5))
    assert emitted_frames(emitted) == list(range(15))
    assert sync.drops == {"out_of_order": 3, "duplicate_stamp": 1} and sync.restarts == 0
    assert accounted(sync, 3 * 16 + 1)


def test_shuffled_stamps_are_each_emitted_or_counted():
    """Sets published in shuffled stamp order (within 0.7 s): the sets older than one already emitted cannot be
    (the synchronizer emits in stamp order) and are counted as out_of_order; in-order sets after them all pass."""
    rng = np.random.default_rng(3)
    sources, sync, emitted = make_sync(3)
    order = rng.permutation(20)
    for i in order:
        feed(sources, camera_sets(int(i), 1))
    shuffled = emitted_frames(emitted)
    assert shuffled == sorted(shuffled) and len(shuffled) < 20
    assert sync.drops["out_of_order"] > 0 and set(sync.drops) <= {"out_of_order", "unpaired"}
    assert accounted(sync, 60) and sync.restarts == 0
    feed(sources, camera_sets(20, 30))
    assert emitted_frames(emitted)[len(shuffled):] == list(range(20, 50))
    assert accounted(sync, 60 + 90)


def test_sets_with_a_missing_input_are_counted_as_unpaired():
    """Color + camera_info without depth: both wait for a partner and are counted unpaired once a later set is
    emitted (their queue overflowing does the same)."""
    sources, sync, emitted = make_sync(3, queue_size=5)
    missing = (3, 4, 5, 12)
    feed(sources, camera_sets(0, 20, skip=missing))
    assert emitted_frames(emitted) == [i for i in range(20) if i not in missing]
    assert sync.drops == {"unpaired": 2 * len(missing)} and sync.pending == 0
    feed(sources, [(0, Stamped(T0 + i * PERIOD, ("color only", i))) for i in range(20, 30)])  # depth and info stop
    assert sync.drops == {"unpaired": 2 * len(missing) + 5} and sync.pending == 5


def test_max_lateness_zero_restarts_on_any_older_stamp_and_invalid_values_are_refused():
    sources, sync, emitted = make_sync(3, max_lateness=0.0)
    feed(sources, camera_sets(0, 10) + camera_sets(3, 1))
    assert emitted_frames(emitted) == list(range(10)) + [3] and sync.restarts == 3
    with pytest.raises(ValueError, match="max_lateness"):
        ApproximateSynchronizer([SimpleFilter()], 5, 0.1, max_lateness=-1.0)


def test_gate_filter_passes_only_accepted_messages_to_the_synchronizer():
    sources = [SimpleFilter() for _ in range(3)]
    seen = []

    def accept(msg, topic):
        seen.append(topic)
        return msg.stamp_ns < T0 + 3600 * 1_000_000_000

    gates = [GateFilter(source, accept, f"topic{index}") for index, source in enumerate(sources)]
    sync = ApproximateSynchronizer(gates, 10, 0.01)
    emitted = []
    sync.registerCallback(lambda *msgs: emitted.append(msgs))
    feed(sources, camera_sets(0, 5) + camera_sets(5, 1, offset_ns=3600 * 1_000_000_000) + camera_sets(6, 5))
    assert emitted_frames(emitted) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert sync.restarts == 0 and sync.dropped == 0  # the gated set never reached it
    assert seen == [f"topic{i}" for i in (0, 1, 2)] * 11


def test_synchronizer_drops_for_the_fallback_and_for_message_filters():
    sources, sync, emitted = make_sync(3, queue_size=5)
    feed(sources, camera_sets(0, 10, skip=(4,)) + camera_sets(2, 1) + [(0, Stamped(T0 + 20 * PERIOD, ("alone",)))])
    assert synchronizer_drops(sync, offered=0, used=0) == ({"unpaired": 2, "out_of_order": 3}, 1)

    class MessageFiltersLike:  # counts nothing: unused messages are reported unpaired, queued ones included
        pass

    assert synchronizer_drops(MessageFiltersLike(), offered=35, used=27) == ({"unpaired": 8}, 0)
    assert synchronizer_drops(MessageFiltersLike(), offered=27, used=27) == ({}, 0)


def test_headerless_messages_are_dropped_unless_allowed():
    sources, sync, emitted = make_sync(2)
    feed(sources, [(0, String(data="x")), (1, String(data="y"))])
    assert emitted == [] and sync.drops == {"no_stamp": 2}
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
