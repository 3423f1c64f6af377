"""TransformTree (ROS-free TF buffer) and the rclpy Buffer / TransformListener built on it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from semantic_recon_ros.core.camera import invert_rigid
from semantic_recon_ros.core.transform_tree import (
    NANOSECONDS_PER_SECOND,
    ConnectivityException,
    ExtrapolationException,
    LookupException,
    TransformTree,
    rigid_from_translation_quaternion,
    slerp,
    translation_quaternion_from_rigid,
)

SEC = NANOSECONDS_PER_SECOND
T0 = 1_700_000_000 * SEC


def random_rigid(rng: np.random.Generator) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
    T[:3, 3] = rng.uniform(-2, 2, 3)
    return T


def test_matrix_quaternion_round_trip_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        T = random_rigid(rng)
        translation, quaternion = translation_quaternion_from_rigid(T)
        assert quaternion[3] >= 0 and abs(np.linalg.norm(quaternion) - 1) < 1e-12
        np.testing.assert_allclose(Rotation.from_quat(quaternion).as_matrix(), T[:3, :3], atol=1e-12)
        np.testing.assert_allclose(rigid_from_translation_quaternion(translation, 3.0 * quaternion), T, atol=1e-12)
    with pytest.raises(ValueError, match="non-zero norm"):
        rigid_from_translation_quaternion([0, 0, 0], [0, 0, 0, 0])


def test_slerp_matches_scipy_including_the_shorter_arc():
    rng = np.random.default_rng(1)
    for _ in range(20):
        rotations = Rotation.random(2, random_state=rng.integers(1 << 31))
        q0, q1 = rotations.as_quat()
        q1 = -q1 if rng.random() < 0.5 else q1  # the same rotation with either sign
        alphas = rng.random(5)
        expected = Slerp([0.0, 1.0], rotations)(alphas).as_matrix()
        for alpha, R in zip(alphas, expected):
            np.testing.assert_allclose(Rotation.from_quat(slerp(q0, q1, alpha)).as_matrix(), R, atol=1e-9)


def test_dynamic_edge_interpolates_translation_linearly_and_rotation_by_slerp():
    rng = np.random.default_rng(2)
    stamps = T0 + np.array([0, 33_000_000, 70_000_000, 100_000_000, 140_000_000])
    poses = [random_rigid(rng) for _ in stamps]
    tree = TransformTree()
    for stamp, T in zip(stamps[::-1], poses[::-1]):  # inserted out of order on purpose
        assert tree.set_transform_matrix("world", "camera", int(stamp), T)
    reference = Slerp((stamps - T0) / SEC, Rotation.from_matrix(np.stack([T[:3, :3] for T in poses])))
    query = np.sort(rng.integers(stamps[0], stamps[-1], 50))
    for stamp in query:
        T = tree.lookup("world", "camera", int(stamp))
        np.testing.assert_allclose(T[:3, :3], reference((stamp - T0) / SEC).as_matrix(), atol=1e-9)
        i = np.searchsorted(stamps, stamp, side="right") - 1
        alpha = (stamp - stamps[i]) / (stamps[i + 1] - stamps[i])
        np.testing.assert_allclose(T[:3, 3], (1 - alpha) * poses[i][:3, 3] + alpha * poses[i + 1][:3, 3], atol=1e-9)
    for stamp, T in zip(stamps, poses):  # exact samples are returned exactly
        np.testing.assert_allclose(tree.lookup("world", "camera", int(stamp)), T, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("camera", "world", int(stamps[2])), invert_rigid(poses[2]), atol=1e-12)


def test_chains_static_and_dynamic_edges_and_sibling_frames():
    """world -> odom (dynamic) -> base (dynamic) -> camera_link (static) -> optical (static); base -> lidar (static)."""
    rng = np.random.default_rng(3)
    stamps = [T0, T0 + SEC // 10]
    world_odom = [random_rigid(rng) for _ in stamps]
    odom_base = [random_rigid(rng) for _ in stamps]
    base_link, link_optical, base_lidar = random_rigid(rng), random_rigid(rng), random_rigid(rng)
    tree = TransformTree()
    tree.set_transform_matrix("base", "camera_link", 0, base_link, static=True)
    tree.set_transform_matrix("/camera_link", "optical", 123, link_optical, static=True)  # leading slash ignored
    tree.set_transform_matrix("base", "lidar", 0, base_lidar, static=True)
    for stamp, a, b in zip(stamps, world_odom, odom_base):
        tree.set_transform_matrix("world", "odom", stamp, a)
        tree.set_transform_matrix("odom", "base", stamp, b)
    assert tree.frames == {"world", "odom", "base", "camera_link", "optical", "lidar"}
    assert tree.root("optical") == "world"

    stamp = stamps[0]
    T_world_optical = world_odom[0] @ odom_base[0] @ base_link @ link_optical
    np.testing.assert_allclose(tree.lookup("world", "optical", stamp), T_world_optical, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("optical", "world", stamp), invert_rigid(T_world_optical), atol=1e-12)
    # Siblings meet at "base": only static edges, valid at any time, even outside the dynamic range.
    expected = invert_rigid(base_lidar) @ base_link @ link_optical
    np.testing.assert_allclose(tree.lookup("lidar", "optical", stamps[0]), expected, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("lidar", "optical", T0 + 100 * SEC), expected, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("optical", "optical", stamp), np.eye(4))
    # Time 0 = latest common time of the dynamic edges on the path.
    assert tree.latest_common_time("world", "optical") == stamps[1]
    assert tree.latest_common_time("lidar", "optical") == 0
    T_latest = world_odom[1] @ odom_base[1] @ base_link @ link_optical
    np.testing.assert_allclose(tree.lookup("world", "optical"), T_latest, atol=1e-12)


def test_static_edge_replaces_dynamic_history_and_reparenting_restarts_it():
    rng = np.random.default_rng(4)
    tree = TransformTree()
    tree.set_transform_matrix("world", "cam", T0, random_rigid(rng))
    fixed = random_rigid(rng)
    tree.set_transform_matrix("world", "cam", 0, fixed, static=True)
    np.testing.assert_allclose(tree.lookup("world", "cam", T0 - 50 * SEC), fixed, atol=1e-12)
    moved = random_rigid(rng)
    tree.set_transform_matrix("map", "cam", T0 + SEC, moved)  # new parent: "cam" now hangs below "map"
    np.testing.assert_allclose(tree.lookup("map", "cam", T0 + SEC), moved, atol=1e-12)
    with pytest.raises(ConnectivityException):
        tree.lookup("world", "cam", T0 + SEC)


def test_the_three_errors_are_raised_with_informative_messages():
    rng = np.random.default_rng(5)
    tree = TransformTree()
    tree.set_transform_matrix("world", "cam", T0, random_rigid(rng))
    tree.set_transform_matrix("world", "cam", T0 + SEC, random_rigid(rng))
    tree.set_transform_matrix("other_root", "lidar", 0, random_rigid(rng), static=True)

    with pytest.raises(LookupException, match='"nope" passed to lookup as source frame does not exist'):
        tree.lookup("world", "nope", T0)
    with pytest.raises(ConnectivityException, match="not part of the same tree"):
        tree.lookup("world", "lidar", T0)
    with pytest.raises(ExtrapolationException, match=r"extrapolation 0\.500000000 s into the future") as info:
        tree.lookup("world", "cam", T0 + SEC + SEC // 2)
    assert "[cam]" in str(info.value) and "[world]" in str(info.value)
    with pytest.raises(ExtrapolationException, match=r"extrapolation 0\.000000001 s into the past"):
        tree.lookup("cam", "world", T0 - 1)
    assert not tree.can_transform("world", "cam", T0 - 1)
    assert tree.can_transform("world", "cam", T0 + SEC // 3)

    single = TransformTree()
    single.set_transform_matrix("a", "b", T0, np.eye(4))
    np.testing.assert_allclose(single.lookup("a", "b", T0), np.eye(4))
    with pytest.raises(ExtrapolationException, match="future"):
        single.lookup("a", "b", T0 + 1)


def test_invalid_transforms_are_refused():
    tree = TransformTree()
    tree.set_transform_matrix("a", "b", T0, np.eye(4))
    tree.set_transform_matrix("b", "c", T0, np.eye(4))
    with pytest.raises(ValueError, match="close a loop"):
        tree.set_transform_matrix("c", "a", T0, np.eye(4))
    with pytest.raises(ValueError, match="two different frames"):
        tree.set_transform_matrix("a", "a", T0, np.eye(4))
    with pytest.raises(ValueError, match="non-empty"):
        tree.set_transform_matrix("", "x", T0, np.eye(4))
    with pytest.raises(ValueError, match="finite"):
        tree.set_transform("a", "x", T0, [np.nan, 0, 0], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="non-zero norm"):
        tree.set_transform("a", "x", T0, [0, 0, 0], [0, 0, 0, 0])


def test_no_pose_is_interpolated_across_a_refused_sample():
    """A zero quaternion or NaN translation between two good samples leaves a hole: lookups between its neighbours
    fail (the pose there is unknown) while lookups outside them still interpolate."""
    tree = TransformTree()
    for i, bad in enumerate((None, [0, 0, 0, 0], None, None)):
        stamp = T0 + i * 100_000_000
        if bad is None:
            tree.set_transform("world", "cam", stamp, [0.1 * i, 0, 0], [0, 0, 0, 1])
        else:
            with pytest.raises(ValueError, match="non-zero norm"):
                tree.set_transform("world", "cam", stamp, [0.1 * i, 0, 0], bad)
    with pytest.raises(ExtrapolationException, match="was invalid"):
        tree.lookup("world", "cam", T0 + 100_000_000)
    with pytest.raises(ExtrapolationException, match="was invalid"):
        tree.lookup("world", "cam", T0 + 150_000_000)
    np.testing.assert_allclose(tree.lookup("world", "cam", T0 + 250_000_000)[:3, 3], [0.25, 0, 0])
    np.testing.assert_allclose(tree.lookup("world", "cam", T0)[:3, 3], [0, 0, 0])


def test_history_is_bounded_by_the_cache_duration():
    tree = TransformTree(cache_duration_ns=2 * SEC)
    for i in range(50):  # 5 s at 10 Hz
        tree.set_transform("world", "cam", T0 + i * SEC // 10, [i, 0, 0], [0, 0, 0, 1])
    newest = T0 + 49 * SEC // 10
    assert tree.lookup("world", "cam", newest)[0, 3] == 49
    assert tree.can_transform("world", "cam", newest - 2 * SEC)
    with pytest.raises(ExtrapolationException, match="into the past"):
        tree.lookup("world", "cam", newest - 2 * SEC - SEC // 10)
    assert tree._edges["cam"].stamps[0] == newest - 2 * SEC  # memory bounded: 21 samples kept
    assert len(tree._edges["cam"].stamps) == 21
    assert not tree.set_transform("world", "cam", newest - 3 * SEC, [0, 0, 0], [0, 0, 0, 1])  # too old: ignored
    unbounded = TransformTree(cache_duration_ns=None)
    for i in range(50):
        unbounded.set_transform("world", "cam", T0 + i * SEC, [i, 0, 0], [0, 0, 0, 1])
    assert unbounded.lookup("world", "cam", T0)[0, 3] == 0


def stream(tree: TransformTree, first: int, count: int, offset_ns: int = 0, child: str = "cam") -> None:
    """``count`` samples world -> child at 30 Hz (x = frame index), all stored."""
    for i in range(first, first + count):
        assert tree.set_transform("world", child, T0 + offset_ns + i * SEC // 30, [i, 0, 0], [0, 0, 0, 1]), i


@pytest.mark.parametrize("jump_s", [3600, -3600, 11])
def test_one_sample_stamped_far_from_the_history_does_not_wipe_it(jump_s):
    """tf2 (and this tree before) kept only the last cache duration before the newest sample: one transform
    stamped +3600 s dropped the whole history and refused every later one as too old. Now the outlier is held
    back, discarded when the stream goes on, and every lookup of the stream works."""
    tree = TransformTree()
    stream(tree, 0, 30)
    assert not tree.set_transform("world", "cam", T0 + jump_s * SEC, [-1, 0, 0], [0, 0, 0, 1])
    assert tree.discarded_samples == 0  # held back: the next sample decides
    stream(tree, 30, 30)
    assert tree.discarded_samples == 1 and tree.newest_stamp("cam") == T0 + 59 * SEC // 30
    for i in range(60):
        assert tree.lookup("world", "cam", T0 + i * SEC // 30)[0, 3] == pytest.approx(i)
    with pytest.raises(ExtrapolationException):
        tree.lookup("world", "cam", T0 + jump_s * SEC)


@pytest.mark.parametrize("jump_s", [60, -60])
def test_a_jump_confirmed_by_the_next_sample_restarts_the_history(jump_s):
    """A pause longer than the cache, a clock reset or a restarted bag: two samples agree on the new stamps, the
    history restarts there (the first of them included)."""
    tree = TransformTree()
    stream(tree, 0, 30)
    assert not tree.set_transform("world", "cam", T0 + jump_s * SEC, [100, 0, 0], [0, 0, 0, 1])
    assert tree.set_transform("world", "cam", T0 + jump_s * SEC + SEC // 30, [101, 0, 0], [0, 0, 0, 1])
    assert tree.discarded_samples == 0 and tree._edges["cam"].stamps[0] == T0 + jump_s * SEC
    assert tree.lookup("world", "cam", T0 + jump_s * SEC)[0, 3] == 100
    with pytest.raises(ExtrapolationException):
        tree.lookup("world", "cam", T0)
    # the same stamp twice (a repeated message) confirms nothing
    assert not tree.set_transform("world", "cam", T0 + 7200 * SEC, [0, 0, 0], [0, 0, 0, 1])
    assert not tree.set_transform("world", "cam", T0 + 7200 * SEC, [0, 0, 0], [0, 0, 0, 1])
    assert tree.discarded_samples == 1


def test_the_clock_vouches_for_a_jump_near_it():
    """With a clock, a sample far from its history but near the current time is stored at once (the first frame
    after a pause longer than the cache needs its pose); one far from both is held back as before."""
    now = [T0 + 60 * SEC]
    tree = TransformTree(clock=lambda: now[0])
    stream(tree, 0, 30)
    assert tree.set_transform("world", "cam", T0 + 60 * SEC, [60, 0, 0], [0, 0, 0, 1])
    assert tree._edges["cam"].stamps == [T0 + 60 * SEC] and tree.lookup("world", "cam", T0 + 60 * SEC)[0, 3] == 60
    assert not tree.set_transform("world", "cam", T0 + 3600 * SEC, [0, 0, 0], [0, 0, 0, 1])
    now[0] = 0  # unknown (sim time before its first message): no vouching
    assert not tree.set_transform("world", "cam", T0 + 7200 * SEC, [0, 0, 0], [0, 0, 0, 1])
    assert tree.discarded_samples == 1


def test_without_a_cache_bound_every_sample_is_kept():
    tree = TransformTree(cache_duration_ns=None)
    stream(tree, 0, 3)
    assert tree.set_transform("world", "cam", T0 + 3600 * SEC, [0, 0, 0], [0, 0, 0, 1])
    stream(tree, 3, 3)
    assert len(tree._edges["cam"].stamps) == 7 and tree.discarded_samples == 0
    assert tree.newest_stamp("nope") is None


# --- the rclpy layer: Buffer and TransformListener ------------------------------------------------

rclpy = pytest.importorskip("rclpy")
from rclpy.duration import Duration  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from rclpy.time import Time  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from semantic_recon_ros.ros import tf_buffer  # noqa: E402
from semantic_recon_ros.ros.transform_conversions import matrix_to_transform_stamped, transform_to_matrix  # noqa: E402


def test_buffer_exports_fallback_when_tf2_ros_is_missing():
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        assert not tf_buffer.USING_TF2_ROS
        assert tf_buffer.Buffer is tf_buffer.TransformTreeBuffer
        assert tf_buffer.LookupException is LookupException
    else:
        assert tf_buffer.USING_TF2_ROS and tf_buffer.Buffer is tf2_ros.Buffer


def test_buffer_lookup_transform_api_and_errors():
    rng = np.random.default_rng(6)
    buffer = tf_buffer.TransformTreeBuffer()
    link_optical = random_rigid(rng)
    poses = [random_rigid(rng) for _ in range(2)]
    assert buffer.set_transform_static(matrix_to_transform_stamped(link_optical, T0, "camera_link", "optical"), "test")
    for i, T in enumerate(poses):
        assert buffer.set_transform(matrix_to_transform_stamped(T, T0 + i * SEC, "world", "camera_link"), "test")
    bad = matrix_to_transform_stamped(np.eye(4), T0, "world", "world")
    assert not buffer.set_transform(bad, "test")  # refused and logged, no exception in a callback

    result = buffer.lookup_transform("world", "optical", Time(nanoseconds=T0))
    assert (result.header.frame_id, result.child_frame_id) == ("world", "optical")
    assert result.header.stamp.sec == T0 // SEC and result.header.stamp.nanosec == 0
    np.testing.assert_allclose(transform_to_matrix(result), poses[0] @ link_optical, atol=1e-9)
    latest = buffer.lookup_transform("world", "optical", Time())
    assert latest.header.stamp.sec == (T0 + SEC) // SEC
    np.testing.assert_allclose(transform_to_matrix(latest), poses[1] @ link_optical, atol=1e-9)
    assert buffer.can_transform("world", "optical", Time(nanoseconds=T0 + SEC // 2).to_msg())
    ok, message = buffer.can_transform("world", "optical", Time(nanoseconds=T0 + 2 * SEC), return_debug_tuple=True)
    assert not ok and "future" in message
    with pytest.raises(tf_buffer.ExtrapolationException):
        buffer.lookup_transform("world", "optical", Time(nanoseconds=T0 + 2 * SEC))
    with pytest.raises(tf_buffer.LookupException):
        buffer.lookup_transform("world", "unknown", Time())


def test_buffer_lookup_waits_for_data_from_another_thread():
    buffer = tf_buffer.TransformTreeBuffer()
    buffer.set_transform(matrix_to_transform_stamped(np.eye(4), T0, "world", "cam"), "test")
    late = np.eye(4)
    late[:3, 3] = [1, 2, 3]

    def publish_late():
        time.sleep(0.3)
        buffer.set_transform(matrix_to_transform_stamped(late, T0 + SEC, "world", "cam"), "test")

    threading.Thread(target=publish_late).start()
    start = time.monotonic()
    result = buffer.lookup_transform("world", "cam", Time(nanoseconds=T0 + SEC), timeout=Duration(seconds=5))
    waited = time.monotonic() - start
    assert 0.25 < waited < 2.0
    np.testing.assert_allclose(transform_to_matrix(result), late, atol=1e-12)

    start = time.monotonic()
    with pytest.raises(tf_buffer.ExtrapolationException):
        buffer.lookup_transform("world", "cam", Time(nanoseconds=T0 + 5 * SEC), timeout=Duration(seconds=0.3))
    assert 0.25 < time.monotonic() - start < 1.5


def test_buffer_holds_back_a_far_future_transform_with_a_throttled_warning(capfd):
    buffer = tf_buffer.TransformTreeBuffer()
    for i in range(10):
        assert buffer.set_transform(matrix_to_transform_stamped(np.eye(4), T0 + i * SEC // 30, "world", "cam"), "test")
    for hours in (1, 2):  # two outliers far from each other: neither confirms the other
        assert not buffer.set_transform(matrix_to_transform_stamped(np.eye(4), T0 + hours * 3600 * SEC, "world", "cam"),
                                        "test")
    for i in range(10, 20):
        assert buffer.set_transform(matrix_to_transform_stamped(np.eye(4), T0 + i * SEC // 30, "world", "cam"), "test")
    assert buffer.discarded_transforms == 2
    buffer.lookup_transform("world", "cam", Time(nanoseconds=T0 + 19 * SEC // 30))
    warnings = [line for line in capfd.readouterr().err.splitlines() if "holding back transform world -> cam" in line]
    assert len(warnings) == 1 and "+3599.700 s from the newest one" in warnings[0]


def test_lookup_unless_futile_waits_only_when_the_pose_can_still_come():
    """No wait when the frame is unknown to TF, when TF lags the requested time by more than max_lag, or when the
    time precedes the history; within max_lag it waits for the transform like lookup_transform."""
    buffer = tf_buffer.TransformTreeBuffer()
    for i in range(10):
        buffer.set_transform(matrix_to_transform_stamped(np.eye(4), T0 + i * SEC // 10, "world", "cam"), "test")
    newest = T0 + 9 * SEC // 10
    wait, lag = Duration(seconds=2.0), Duration(seconds=0.2)

    def elapsed(stamp_ns: int, frame: str = "cam", expected=tf_buffer.TransformException) -> float:
        start = time.monotonic()
        with pytest.raises(expected):
            tf_buffer.lookup_transform_unless_futile(buffer, "world", frame, Time(nanoseconds=stamp_ns), wait, lag)
        return time.monotonic() - start

    assert elapsed(newest, frame="camera_without_tf", expected=tf_buffer.LookupException) < 0.1
    assert elapsed(newest + SEC // 2, expected=tf_buffer.ExtrapolationException) < 0.1  # TF 0.5 s behind
    assert elapsed(T0 - SEC, expected=tf_buffer.ExtrapolationException) < 0.1  # before the history
    assert 1.9 < elapsed(newest + SEC // 10) < 3.0  # within max_lag: waits, and nothing comes

    def publish_late():
        time.sleep(0.3)
        buffer.set_transform(matrix_to_transform_stamped(np.eye(4), newest + SEC // 5, "world", "cam"), "test")

    threading.Thread(target=publish_late).start()
    start = time.monotonic()
    requested = Time(nanoseconds=newest + SEC // 10)
    got = tf_buffer.lookup_transform_unless_futile(buffer, "world", "cam", requested, wait, lag)
    assert 0.25 < time.monotonic() - start < 1.5 and got.header.stamp.nanosec == (newest + SEC // 10) % SEC
    assert tf_buffer.lookup_transform_unless_futile(buffer, "world", "cam", Time(nanoseconds=T0), Duration(), lag)


def test_lookup_unless_futile_waits_for_the_confirmation_of_a_held_jump():
    """After a pause longer than the cache (and no clock to vouch for it), the first transform is held back; a
    frame at its stamp waits for the next transform, which confirms the jump, instead of failing at once."""
    buffer = tf_buffer.TransformTreeBuffer()
    for i in range(10):
        buffer.set_transform(matrix_to_transform_stamped(np.eye(4), T0 + i * SEC // 10, "world", "cam"), "test")
    resumed = T0 + 60 * SEC
    moved = np.eye(4)
    moved[0, 3] = 6.0
    assert not buffer.set_transform(matrix_to_transform_stamped(moved, resumed, "world", "cam"), "test")
    assert buffer.latest_received_time("world", "cam") == resumed

    def confirm():
        time.sleep(0.1)
        buffer.set_transform(matrix_to_transform_stamped(moved, resumed + SEC // 30, "world", "cam"), "test")

    threading.Thread(target=confirm).start()
    got = tf_buffer.lookup_transform_unless_futile(buffer, "world", "cam", Time(nanoseconds=resumed),
                                                   Duration(seconds=1.0), Duration(seconds=0.2))
    np.testing.assert_allclose(transform_to_matrix(got), moved, atol=1e-12)


def test_listener_receives_tf_and_latched_tf_static_over_dds():
    """Real rclpy pub/sub in one process: static TF published before the listener exists still arrives."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(np.random.default_rng().integers(100, 200)))
    try:
        talker = rclpy.create_node("tf_talker", context=context)
        listener_node = rclpy.create_node("tf_listener", context=context)
        static_qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        static_pub = talker.create_publisher(TFMessage, "/tf_static", static_qos)
        tf_pub = talker.create_publisher(TFMessage, "/tf", 100)
        rng = np.random.default_rng(7)
        link_optical = random_rigid(rng)
        static_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(link_optical, T0, "camera_link", "optical")]))

        buffer = tf_buffer.Buffer()
        listener = tf_buffer.TransformListener(buffer, listener_node)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(listener_node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        poses = [random_rigid(rng) for _ in range(5)]
        deadline = time.monotonic() + 10
        while tf_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        for i, T in enumerate(poses):
            tf_pub.publish(TFMessage(transforms=[matrix_to_transform_stamped(T, T0 + i * SEC // 10, "world", "camera_link")]))
        # Worker-thread lookup (this thread) while the executor thread delivers the messages.
        last = buffer.lookup_transform("world", "optical", Time(nanoseconds=T0 + 4 * SEC // 10), timeout=Duration(seconds=10))
        np.testing.assert_allclose(transform_to_matrix(last), poses[4] @ link_optical, atol=1e-9)
        for i, T in enumerate(poses):
            got = buffer.lookup_transform("world", "optical", Time(nanoseconds=T0 + i * SEC // 10))
            np.testing.assert_allclose(transform_to_matrix(got), T @ link_optical, atol=1e-9)
        listener.unregister()
        executor.shutdown()
        spinner.join(timeout=5)
    finally:
        rclpy.try_shutdown(context=context)
