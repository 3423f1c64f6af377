"""Hostile input to the mapping node over real DDS: one bad stamp must never stop the map, every lost frame is counted.

One node process (the shipped config/mapping.yaml with sim time, color + depth + camera_info, reliable input QoS,
the default max_frame_age 5 s and tf_timeout 0.2 s) gets, from this process, one hostile case after another, each
followed by valid frames. Each case checks that the node survives, that what it lost is counted under its reason
(``dropped`` for frames, ``dropped_messages`` for input messages, ``tf_discarded`` for /tf transforms), that every
input message is accounted for, and that the valid frames after it are integrated. Each docstring gives what the
same case did to the node before the fix (issue "Reliability: one bad stamp must never stop the map, every lost
frame is counted"; measured with these cases, each on a fresh node).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from support.dds_processes import discovered_or_restarted, stop_process  # noqa: E402
from support.mapping_node_process import FramePublisher, MapListener, node_log, start_node  # noqa: E402
from semantic_recon_ros.core.camera import PinholeCamera  # noqa: E402
from semantic_recon_ros.core.frame import RGBDFrame  # noqa: E402
from semantic_recon_ros.ros.header_conversions import time_msg  # noqa: E402

SEC = 1_000_000_000
START_NS = 1_760_000_000 * SEC
INPUTS = ("color", "depth", "info")
NODE_OVERRIDES = {"use_sim_time": "true", "input_qos": "reliable", "status_period": "0.5", "mesh_rate": "2.0",
                  "voxel_map_rate": "0.0", "queue_size": "10", "checkpoint": "''", "segmenter": "''"}
CAMERA = PinholeCamera(100.0, 100.0, 79.5, 59.5, 160, 120)


def wall_frame(index: int) -> RGBDFrame:
    """A camera 1.5 m in front of a plain wall, 2 cm further along x per frame."""
    T_world_cam = np.eye(4)
    T_world_cam[0, 3] = 0.02 * index
    color = np.full((CAMERA.height, CAMERA.width, 3), (40 + 7 * index) % 256, np.uint8)
    labels = np.zeros(CAMERA.shape, np.int64)
    return RGBDFrame(color, np.full(CAMERA.shape, 1.5, np.float32), CAMERA, T_world_cam, 0.0, labels)


class HostileFeed:
    """The test process's camera: a clock advancing 0.1 s per frame, valid frames and the node's status."""

    def __init__(self, listener: MapListener, publisher: FramePublisher) -> None:
        self.listener, self.publisher = listener, publisher
        self.stamp = START_NS
        self.frames = 0

    def next_stamp(self) -> int:
        self.stamp += SEC // 10
        return self.stamp

    def publish(self, stamp_ns: int | None = None, **options) -> None:
        """One frame (valid unless ``options`` say otherwise, see FramePublisher.publish) at the next stamp."""
        options.setdefault("clock_ns", self.stamp)
        self.publisher.publish(wall_frame(self.frames), self.next_stamp() if stamp_ns is None else stamp_ns, **options)
        self.frames += 1
        time.sleep(0.03)

    def valid(self, count: int) -> None:
        for _ in range(count):
            self.publish()

    def idle(self) -> dict:
        return self.listener.wait_until_idle(timeout=60)


def changes(after: dict, before: dict) -> dict:
    """The counters that changed from ``before`` to ``after``: dropped and dropped_messages by reason, and more."""
    def by_reason(key):
        reasons = sorted({*after[key], *before[key]})
        diff = {reason: after[key].get(reason, 0) - before[key].get(reason, 0) for reason in reasons}
        return {reason: count for reason, count in diff.items() if count}

    def difference(key):
        return after[key] - before[key]

    return {"frames_in": difference("frames_in"), "integrated": difference("integrated"),
            "dropped": by_reason("dropped"), "dropped_messages": by_reason("dropped_messages"),
            "messages_in": sum(after["messages_in"].values()) - sum(before["messages_in"].values()),
            "tf_discarded": difference("tf_discarded")}


def check_accounting(status: dict) -> None:
    """Every input message is in a frame, dropped (by reason) or waiting; every frame integrated or dropped."""
    assert sum(status["messages_in"].values()) == (len(INPUTS) * status["frames_in"] + status["sync_queued"]
                                                   + sum(status["dropped_messages"].values())), status
    assert status["frames_in"] == status["integrated"] + sum(status["dropped"].values()), status


@pytest.fixture(scope="module")
def feed(dds, tmp_path_factory):
    env, context = dds
    listener = MapListener(context, "hostile_listener")
    logs = tmp_path_factory.mktemp("hostile_node")
    overrides = {**NODE_OVERRIDES, "output_dir": str(logs / "maps")}
    process = start_node(env, logs, overrides)
    try:
        process = discovered_or_restarted(process, lambda: start_node(env, logs, overrides), listener.has_status,
                                          "the mapping node")
        publisher = FramePublisher(listener.node)
        publisher.wait_for_node(inputs=INPUTS)
        publisher.clock.publish(Clock(clock=time_msg(START_NS)))
        time.sleep(0.5)
        hostile = HostileFeed(listener, publisher)
        hostile.valid(3)
        status = hostile.idle()
        assert status["integrated"] == 3 and not status["dropped"] and not status["dropped_messages"], status
        hostile.process = process
        yield hostile
        assert process.poll() is None, "the node died"
        log = node_log(process)
        assert "Traceback" not in log, log
    finally:
        listener.close()
        stop_process(process)


@pytest.mark.parametrize("ahead_s, reason", [(3600, "future"), (4, None)])
def test_a_set_stamped_in_the_future_does_not_block_later_frames(feed, ahead_s, reason):
    """Before: after a set stamped +3600 s none of the 10 valid frames was integrated, after +4 s none either (only
    the +4 s frame), their 30 messages discarded in the synchronizer under no reason. Now +3600 s (beyond
    max_frame_age) is dropped message by message on arrival; +4 s is a valid frame, and the synchronizer's inputs
    restart at the next set, stamped more than 1 s before it."""
    before = feed.idle()
    feed.publish(stamp_ns=feed.stamp + ahead_s * SEC)
    feed.valid(10)
    status = feed.idle()
    change = changes(status, before)
    print(f"\n+{ahead_s} s set, then 10 valid frames: {change}")
    if reason:
        assert change["dropped_messages"] == {reason: len(INPUTS)} and change["integrated"] == 10
        assert f"[{reason}; counted" in node_log(feed.process)
    else:
        assert not change["dropped_messages"] and change["integrated"] == 11
    assert not change["dropped"]
    check_accounting(status)


@pytest.mark.parametrize("behind_s", [3600, 6])
def test_sets_stamped_in_the_past_are_counted_as_stale(feed, behind_s):
    """Before: the 3 messages of a set stamped an hour or 6 s old disappeared inside the synchronizer under no
    reason ("stale" stayed 0: the age check came after synchronization). Now each is dropped on arrival as stale."""
    before = feed.idle()
    feed.publish(stamp_ns=feed.stamp - behind_s * SEC)
    feed.valid(5)
    status = feed.idle()
    change = changes(status, before)
    print(f"\n-{behind_s} s set, then 5 valid frames: {change}")
    assert change["dropped_messages"] == {"stale": len(INPUTS)} and not change["dropped"]
    assert change["integrated"] == 5
    assert "[stale; counted" in node_log(feed.process)
    check_accounting(status)

    def warning(listener):  # the same numbers on /diagnostics: no frame was dropped, but the clock is suspicious
        entries = listener.diagnostics.status if listener.diagnostics is not None else []
        return entries and entries[0].level == DiagnosticStatus.WARN and entries[0].message

    message = feed.listener.wait_for(warning, 10, "a /diagnostics warning")
    assert "input messages stamped too far from the node clock" in message


def test_shuffled_stamps_are_integrated_or_counted(feed):
    """Before: of 20 sets at 30 Hz published in shuffled stamp order 16 were discarded (48 messages), none counted.
    The synchronizer still emits in stamp order (a set older than an emitted one cannot be), but now counts each
    message it drops."""
    before = feed.idle()
    stamps = [feed.stamp + (i + 1) * SEC // 30 for i in range(20)]
    feed.stamp = stamps[-1]
    for index in np.random.default_rng(4).permutation(20):
        feed.publish(stamp_ns=stamps[index], clock_ns=stamps[-1])
    feed.valid(5)
    status = feed.idle()
    change = changes(status, before)
    print(f"\n20 shuffled sets, then 5 valid frames: {change}")
    assert change["dropped_messages"].get("out_of_order", 0) > 0
    assert set(change["dropped_messages"]) <= {"out_of_order", "unpaired"}
    assert change["integrated"] == change["frames_in"] >= 5 + 1 and not change["dropped"]
    assert change["messages_in"] == len(INPUTS) * 25
    check_accounting(status)


def test_sets_without_depth_are_counted_as_unpaired(feed):
    """Before: color + camera_info without depth vanished in the synchronizer under no reason (6 messages). Now both
    messages of each incomplete set are counted as unpaired once a later set is synchronized."""
    before = feed.idle()
    for _ in range(3):
        feed.publish(skip=("depth",))
    feed.valid(5)
    status = feed.idle()
    change = changes(status, before)
    print(f"\n3 sets without depth, then 5 valid frames: {change}")
    assert change["dropped_messages"] == {"unpaired": 2 * 3} and not change["dropped"]
    assert change["integrated"] == 5 and status["sync_queued"] == 0
    check_accounting(status)


def test_a_tf_stamped_an_hour_ahead_does_not_break_later_lookups(feed):
    """Before: after one /tf message stamped +3600 s all 10 valid frames failed (tf): the TF cache dropped everything
    older than the future stamp minus 10 s and refused later transforms. Now that transform is held back, then
    discarded."""
    before = feed.idle()
    feed.publisher.publish_pose(np.eye(4), feed.stamp + 3600 * SEC)
    time.sleep(0.1)
    feed.valid(10)
    status = feed.idle()
    change = changes(status, before)
    print(f"\n/tf +3600 s, then 10 valid frames: {change}")
    assert change["integrated"] == 10 and not change["dropped"] and not change["dropped_messages"]
    assert change["tf_discarded"] == 1 and "holding back transform world -> test_camera" in node_log(feed.process)
    check_accounting(status)


def test_frames_after_a_pause_longer_than_the_tf_cache_are_all_integrated(feed):
    """A pause of 30 s (camera and localization stopped, or the next bag): the first /tf after it lies far from its
    frame's history but near the node clock, so it is stored at once and the first frame after the pause is
    integrated too (not held back as a possible outlier)."""
    before = feed.idle()
    feed.stamp += 30 * SEC
    feed.valid(5)
    status = feed.idle()
    change = changes(status, before)
    print(f"\n30 s pause, then 5 valid frames: {change}")
    assert change["integrated"] == 5 and not change["dropped"] and change["tf_discarded"] == 0
    check_accounting(status)


def test_no_tf_fails_fast_and_starves_no_valid_frame(feed):
    """Before: with no TF for the camera the worker waited tf_timeout per frame while the queue overflowed: of the
    40 frames 32 were dropped as queue_full, 8 as tf (valid frames right after can be lost the same way). Now a frame
    whose camera TF never arrived fails at once."""
    before = feed.idle()
    flood = 40
    for _ in range(flood):
        feed.publish(frame_id="camera_without_tf", pose=False)
    feed.valid(10)
    status = feed.idle()
    change = changes(status, before)
    print(f"\n{flood} frames without TF, then 10 valid frames: {change}")
    assert change["dropped"] == {"tf": flood} and change["integrated"] == 10  # no queue_full
    assert not change["dropped_messages"]
    check_accounting(status)
