"""The semantic mapping node: synchronized RGB-D (+ labels) and TF in; semantic mesh, voxel map and legend out.

Topics (relative names, remap them to the camera driver's):

=========================  =====================================  =========================================
name                       type                                   role
=========================  =====================================  =========================================
``color/image_raw``        sensor_msgs/Image                      in: rgb8, bgr8, rgba8, bgra8 or mono8
``depth/image_raw``        sensor_msgs/Image                      in: 32FC1 metres or 16UC1 mm (not with rgb_only)
``color/camera_info``      sensor_msgs/CameraInfo                 in: intrinsics of both images
``semantic/image_raw``     sensor_msgs/Image                      in (use_labels): mono8 / 16UC1 class ids
``/tf``, ``/tf_static``    tf2_msgs/TFMessage                     in: camera pose world_frame <- image frame
``mesh``                   visualization_msgs/MarkerArray         out, transient-local, depth 10: incremental
``voxel_map``              sensor_msgs/PointCloud2                out, transient-local: near-surface voxels
``class_legend``           visualization_msgs/MarkerArray         out, latched: one text marker per class
``~/status``               std_msgs/String                        out: the status line's numbers as JSON
``~/save_map``             std_srvs/Trigger                       writes mesh_rgb.ply, mesh_semantic.ply,
                                                                  volume.pt into output_dir (paths: JSON);
                                                                  inputs wait meanwhile (DDS queues them)
``~/reset_map``            std_srvs/Trigger                       empties the map (and the predictions)
=========================  =====================================  =========================================

With a ``checkpoint``, a completion network (S4R, :mod:`semantic_recon_ros.core.completion`) predicts
the geometry, color and classes of the map, including space the camera never saw, and ``mesh_source``
chooses what the mesh, the voxel map and saved meshes show (observed, completed or both); voxel map
points the network filled alone have ``observed = 0``, and labels come from the fused 2D labels where a
voxel has votes, from the network elsewhere. The default ``checkpoint`` is the installed default model; a
checkpoint that cannot be used is logged as an error at startup and the node maps by fusion only.

Threads: the executor runs only light callbacks: the input callbacks decode, check and enqueue a
frame into a bounded queue that drops its oldest frame when full; TF, /clock, services. One worker
thread takes frames from the queue, looks up the camera pose in TF at the image stamp (waiting up to
``tf_timeout``) and fuses the frame. One output thread publishes mesh, voxel map and status on a
steady schedule. With a completion network, a completion thread runs the network every
``completion_period`` seconds over the chunks whose observations changed, holding the volume only while
it reads a batch's inputs and writes its predictions; the network itself runs on one more thread with a
lower CPU priority (nice + COMPLETION_NICENESS), so that it takes only CPU time the others leave, while
the threads that take ``volume_lock`` keep their priority (a low-priority thread holding the lock would
stall integration on a busy machine).
``volume_lock`` (granted in request order) serializes every access to the volume.
:func:`main` spins the node with rclpy's ``EventsExecutor`` where it exists (its per-message cost is far
below the Python executors', which could not keep up with 30 Hz RGB-D + TF + /clock on 2 cores).

Every frame that is not fused is counted under a reason (``status`` lists them) with a warning
throttled per reason: ``stale`` / ``future`` (stamp farther than max_frame_age from the clock),
``encoding``, ``malformed``, ``camera_info``, ``size_mismatch``, ``no_frame_id``, ``queue_full``,
``tf``, ``no_valid_depth``, ``invalid_frame``, ``reset`` (queued before a reset), ``error``
(an unexpected exception, logged; the node keeps running).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ..core.camera import PinholeCamera
from ..core.classes import load_class_set
from ..core import fusion_kernel
from ..core.completion import CompletionEngine, CompletionStats, resolve_checkpoint
from ..core.completion_config import CompletionConfig
from ..core.device import resolve_device
from ..core.mapping_node_config import MappingNodeConfig
from ..core.meshing import extract_mesh
from ..core.ply import write_semantic_ply
from ..core.tsdf_volume import SemanticTSDFVolume
from ..core.volume_config import VolumeConfig
from .camera_info_conversions import InvalidCameraInfoError, camera_from_camera_info
from .header_conversions import stamp_to_ns
from .image_conversions import (
    MalformedImageError,
    UnsupportedEncodingError,
    decode_color_image,
    decode_depth_image,
    decode_label_image,
)
from .mesh_conversions import RegionMeshMarkers, class_legend_markers, mesh_vertex_colors, serialize_marker_array
from .node_parameters import declare_sections
from .pointcloud_conversions import VOXEL_POINT_DTYPE, surface_voxel_points, voxel_points_to_pointcloud2
from .tf_buffer import Buffer, TransformException, TransformListener
from .time_sync import ApproximateTimeSynchronizer, Subscriber
from .transform_conversions import transform_to_matrix

try:  # rclpy >= Jazzy
    from rclpy.experimental import EventsExecutor
except ImportError:
    EventsExecutor = None

NODE_NAME = "mapping_node"
COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC, LABELS_TOPIC = (
    "color/image_raw", "depth/image_raw", "color/camera_info", "semantic/image_raw")
MESH_TOPIC, VOXEL_MAP_TOPIC, LEGEND_TOPIC, STATUS_TOPIC = "mesh", "voxel_map", "class_legend", "~/status"
MESH_RGB_FILE, MESH_SEMANTIC_FILE, VOLUME_FILE = "mesh_rgb.ply", "mesh_semantic.ply", "volume.pt"
WARNING_PERIOD_S = 5.0  # per drop reason
COMPLETION_NICENESS = 10  # nice value of the completion network's thread above the process's
MAX_MESH_TIME_SHARE = 1 / 3  # meshing (which holds the volume) may take at most this share of the time
LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Mesh updates are incremental, so none may be lost: the publisher keeps the last 10 for slow subscribers
# (which should subscribe with depth >= 10). Late subscribers get that history, then a full resend
# (DELETEALL + every region).
MESH_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def input_qos_profile(name: str, depth: int) -> QoSProfile:
    """QoS of the input subscriptions: ``sensor_data`` (best effort), ``reliable`` or ``system_default``."""
    if name == "sensor_data":
        base = qos_profile_sensor_data
    elif name == "reliable":
        base = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    elif name == "system_default":
        base = qos_profile_system_default
    else:
        raise ValueError(f"input_qos must be sensor_data, reliable or system_default, got {name!r}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=base.reliability,
                      durability=base.durability)


def resident_memory_bytes() -> int:
    """Resident set size of this process (Linux /proc), 0 where unavailable."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def check_mode(config: MappingNodeConfig, volume: VolumeConfig) -> None:
    """Cross-section constraints of the parameters; ValueError naming the parameters. (Completion settings that
    do not fit the volume are reported when the network loads; the node then maps by fusion only.)"""
    if config.rgb_only:
        if volume.feature_dim != 3:
            raise ValueError(f"rgb_only back-projects RGB features: set volume.feature_dim to 3 "
                             f"(it is {volume.feature_dim})")
        if not volume.min_depth < config.rgb_only_max_range <= volume.max_depth:
            raise ValueError(f"rgb_only_max_range ({config.rgb_only_max_range}) must lie in (volume.min_depth, "
                             f"volume.max_depth] = ({volume.min_depth}, {volume.max_depth}]")


def completion_text(completion: dict) -> str:
    """The completion part of the status log line ("" for a fusion-only mapper)."""
    if not completion["active"]:
        return ""
    run_ms = "-" if completion["run_ms"] is None else f"{completion['run_ms']:.0f} ms"
    return (f", completion: {completion['runs']} runs, {completion['chunks_run']} chunks done, "
            f"{completion['chunks_pending']} pending, {run_ms} per run")


@dataclass
class PendingFrame:
    """A decoded frame waiting for integration (images in the camera's optical frame ``frame_id``).

    Attributes:
        color: (H, W, 3) uint8 RGB.
        depth: (H, W) float32 metres, None in RGB-only mode.
        labels: (H, W) int64 class ids, None without labels.
        generation: map generation (number of resets) when the frame was received.
    """

    stamp_ns: int
    frame_id: str
    camera: PinholeCamera
    color: np.ndarray
    depth: np.ndarray | None
    labels: np.ndarray | None
    generation: int


class FairLock:
    """A mutex granted in request order: with ``threading.Lock`` the worker, re-acquiring right after each
    frame, can starve the publishing timers and services for as long as frames keep coming."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._condition.wait_for(lambda: self._serving == ticket)

    def __exit__(self, *exc_info) -> None:
        with self._condition:
            self._serving += 1
            self._condition.notify_all()


class FrameQueue:
    """Bounded FIFO between the input callbacks and the worker; putting into a full queue drops the oldest item."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: deque = deque()
        self._condition = threading.Condition()

    def put(self, item) -> object | None:
        """Append ``item``; returns the item dropped to make room, or None."""
        with self._condition:
            dropped = self._items.popleft() if len(self._items) >= self.capacity else None
            self._items.append(item)
            self._condition.notify()
        return dropped

    def get(self, timeout: float) -> object | None:
        """The oldest item, waiting up to ``timeout`` seconds; None when still empty."""
        with self._condition:
            if not self._items:
                self._condition.wait(timeout)
            return self._items.popleft() if self._items else None

    def clear(self) -> int:
        """Remove every item; returns how many."""
        with self._condition:
            count = len(self._items)
            self._items.clear()
        return count

    def __len__(self) -> int:
        with self._condition:
            return len(self._items)


class MappingStatistics:
    """Thread-safe counters of the node and timings averaged over each status period."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages_in: Counter[str] = Counter()
        self.frames_in = 0
        self.integrated = 0
        self.dropped: Counter[str] = Counter()
        self._integrate_s: list[float] = []
        self._mesh_s: list[float] = []

    def count_message(self, topic: str) -> None:
        with self._lock:
            self.messages_in[topic] += 1

    def count_frame(self) -> None:
        with self._lock:
            self.frames_in += 1

    def count_drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += count

    def count_integration(self, seconds: float) -> None:
        with self._lock:
            self.integrated += 1
            self._integrate_s.append(seconds)

    def count_mesh(self, seconds: float) -> None:
        with self._lock:
            self._mesh_s.append(seconds)

    def period_summary(self) -> dict:
        """Cumulative counters plus mean timings since the previous call (which it resets)."""
        with self._lock:
            summary = {
                "frames_in": self.frames_in,
                "integrated": self.integrated,
                "dropped": dict(sorted(self.dropped.items())),
                "messages_in": dict(sorted(self.messages_in.items())),
                "integrate_ms": round(1000 * float(np.mean(self._integrate_s)), 1) if self._integrate_s else None,
                "mesh_ms": round(1000 * float(np.mean(self._mesh_s)), 1) if self._mesh_s else None,
            }
            self._integrate_s, self._mesh_s = [], []
        return summary


class CompletionStatistics:
    """Thread-safe counters of the completion runs, with the mean run time over each status period."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs = 0
        self.chunks_run = 0
        self.chunks_skipped = 0
        self.chunks_pending = 0
        self.blocks_allocated = 0
        self.errors = 0
        self.integrated_while_computing = 0  # frames fused while the network was computing
        self.caught_up_stamp_ns = 0
        self._run_s: list[float] = []
        self._network_s: list[float] = []

    def count_run(self, stats: CompletionStats, caught_up_stamp_ns: int | None) -> None:
        """One finished run; ``caught_up_stamp_ns``: map stamp whose observations are now all completed, if any."""
        with self._lock:
            self.runs += 1
            self.chunks_run += stats.chunks_run
            self.chunks_skipped += stats.chunks_skipped
            self.chunks_pending = stats.chunks_pending
            self.blocks_allocated += stats.blocks_allocated
            if caught_up_stamp_ns is not None:
                self.caught_up_stamp_ns = caught_up_stamp_ns
            if stats.chunks_run:
                self._run_s.append(stats.seconds)
                self._network_s.append(stats.network_seconds)

    def count_integration_while_computing(self) -> None:
        with self._lock:
            self.integrated_while_computing += 1

    def count_error(self) -> None:
        with self._lock:
            self.errors += 1

    def reset(self) -> None:
        """The map was emptied: nothing is pending, an empty map is complete."""
        with self._lock:
            self.chunks_pending, self.caught_up_stamp_ns = 0, 0

    def period_summary(self) -> dict:
        """Cumulative counters plus mean run and network times (runs that did work) since the previous call."""
        with self._lock:
            summary = {
                "runs": self.runs, "chunks_run": self.chunks_run, "chunks_skipped": self.chunks_skipped,
                "chunks_pending": self.chunks_pending, "blocks_allocated": self.blocks_allocated, "errors": self.errors,
                "integrated_while_computing": self.integrated_while_computing, "stamp_ns": self.caught_up_stamp_ns,
                "run_ms": round(1000 * float(np.mean(self._run_s)), 1) if self._run_s else None,
                "network_ms": round(1000 * float(np.mean(self._network_s)), 1) if self._network_s else None,
            }
            self._run_s, self._network_s = [], []
        return summary


class MappingNode(Node):
    """Live semantic mapping (see the module docstring); parameters from :mod:`.node_parameters`.

    Args:
        node_name: ROS node name (the params-file key).
        **kwargs: passed to ``rclpy.node.Node`` (e.g. ``context``, ``parameter_overrides``).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        sections = declare_sections(self)
        self.config: MappingNodeConfig = sections[""]
        volume_config: VolumeConfig = sections["volume"]
        completion_config: CompletionConfig = sections["completion"]
        check_mode(self.config, volume_config)
        if self.config.torch_threads > 0:
            torch.set_num_threads(self.config.torch_threads)
        try:
            self.classes = load_class_set(self.config.classes_file or None)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"classes_file: {error}") from None
        self.volume = SemanticTSDFVolume(volume_config, self.classes.names, resolve_device(self.config.device))
        if self.volume.use_fusion_kernel:
            fusion_kernel.load()  # load (or compile) the CPU kernel now rather than while the first frame waits
        self.checkpoint, self.completion_error = None, None  # resolved path, why it is not used
        self.engine = self._load_completion_network(completion_config)
        self.mesh_source = self.config.mesh_source if self.engine is not None else "observed"
        self.completion_stats = CompletionStatistics()
        self._network_computing = threading.Event()  # set while the network computes a batch
        self.volume_lock = FairLock()
        self.stats = MappingStatistics()
        self.queue = FrameQueue(self.config.queue_size)
        self.mesh_markers = RegionMeshMarkers(self.config.world_frame, self.config.mesh_region_size)
        self._generation = 0  # number of resets; frames queued before a reset are discarded
        self._map_version = 0  # incremented by every change of the volume
        self._map_stamp_ns = 0  # stamp of the newest fused frame (0 = empty map)
        self._map_size = (0, self.volume.memory_bytes())  # (blocks, bytes), updated under volume_lock
        self._meshed_version = -1
        self._mesh_stamp_ns = 0
        self._mesh_subscribers = 0
        self._next_mesh_time = 0.0  # monotonic time before which no new mesh is extracted
        self._voxel_map_version = -1
        self._output_lock = threading.Lock()  # mesh / voxel map publication state (taken before volume_lock)
        self._last_warning: dict[str, float] = {}
        self._warning_lock = threading.Lock()

        self.tf_buffer = Buffer(node=self)
        self.tf_listener = TransformListener(self.tf_buffer, self)

        self.mesh_publisher = self.create_publisher(MarkerArray, MESH_TOPIC, MESH_QOS)
        self.voxel_map_publisher = self.create_publisher(PointCloud2, VOXEL_MAP_TOPIC, LATCHED_QOS)
        self.legend_publisher = self.create_publisher(MarkerArray, LEGEND_TOPIC, LATCHED_QOS)
        self.status_publisher = self.create_publisher(String, STATUS_TOPIC, 10)

        self.input_group = MutuallyExclusiveCallbackGroup()
        self.service_group = MutuallyExclusiveCallbackGroup()
        self.input_topics = self._subscribe_inputs()
        self.create_service(Trigger, "~/save_map", self._on_save_map, callback_group=self.service_group)
        self.create_service(Trigger, "~/reset_map", self._on_reset_map, callback_group=self.service_group)

        self.legend_publisher.publish(serialize_marker_array(
            class_legend_markers(self.classes, self.config.world_frame, self.get_clock().now().nanoseconds)))
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="integration", daemon=True)
        self._worker.start()
        self._output_thread = threading.Thread(target=self._publish_outputs, name="outputs", daemon=True)
        self._output_thread.start()
        self._completion_thread = None
        self._network_thread = None
        if self.engine is not None:
            self._network_thread = ThreadPoolExecutor(1, "completion_network", initializer=self._lower_thread_priority)
            self._completion_thread = threading.Thread(target=self._complete, name="completion", daemon=True)
            self._completion_thread.start()
        mode = "rgb-only" if self.config.rgb_only else "rgb-d" + (" + labels" if self.config.use_labels else "")
        completion = (f"completion by {self.checkpoint} every {self.config.completion_period:g} s, mesh source "
                      f"{self.mesh_source}" if self.engine is not None else "fusion only (no completion network)")
        self.get_logger().info(
            f"mapping {mode} in {self.config.world_frame!r} at {volume_config.voxel_size * 100:g} cm on "
            f"{self.volume.device}; inputs {', '.join(self.input_topics)} ({self.config.input_qos}); {completion}")

    def _load_completion_network(self, config: CompletionConfig) -> CompletionEngine | None:
        """The completion engine of the ``checkpoint`` parameter; None (error logged) when it cannot be used."""
        if not self.config.checkpoint:
            return None
        if self.config.rgb_only:
            self.get_logger().info(f"checkpoint {self.config.checkpoint!r} not loaded: the completion network "
                                   f"completes a depth-fused TSDF, and rgb_only fuses image features only")
            return None
        try:
            self.checkpoint = resolve_checkpoint(self.config.checkpoint)
            engine = CompletionEngine.from_checkpoint(self.checkpoint, self.volume, config)
        except (FileNotFoundError, ValueError) as error:
            self.completion_error = str(error)
            self.get_logger().error(f"checkpoint {self.config.checkpoint!r} cannot be used, mapping by fusion only "
                                    f"(no completion): {error}")
            return None
        network = engine.network
        parameters = sum(p.numel() for p in network.parameters())
        self.get_logger().info(f"completion network {self.checkpoint}: {type(network).__name__}, "
                               f"{parameters / 1e6:.2f} M parameters, chunks of {config.chunk_size}^3 voxels")
        return engine

    # ------------------------------------------------------------------ inputs
    def _subscribe_inputs(self) -> list[str]:
        """Create the synchronized subscriptions; returns their resolved topic names."""
        cfg = self.config
        topics = [COLOR_TOPIC] + ([] if cfg.rgb_only else [DEPTH_TOPIC]) + [INFO_TOPIC]
        topics += [LABELS_TOPIC] if cfg.use_labels else []
        qos = input_qos_profile(cfg.input_qos, cfg.sync_queue_size)
        subscribers = []
        for topic in topics:
            msg_type = CameraInfo if topic == INFO_TOPIC else Image
            subscriber = Subscriber(self, msg_type, topic, qos_profile=qos, callback_group=self.input_group)
            subscriber.registerCallback(self._on_message, topic)
            subscribers.append(subscriber)
        self._input_order = topics
        self._synchronizer = ApproximateTimeSynchronizer(subscribers, cfg.sync_queue_size, cfg.sync_slop)
        self._synchronizer.registerCallback(self._on_frame)
        return [self.resolve_topic_name(topic) for topic in topics]

    def _on_message(self, msg, topic: str) -> None:
        del msg
        self.stats.count_message(topic)

    def _warn(self, reason: str, text: str) -> None:
        """Log ``text`` as a warning unless a warning for ``reason`` was logged in the last WARNING_PERIOD_S."""
        now = time.monotonic()
        with self._warning_lock:
            if now - self._last_warning.get(reason, -np.inf) < WARNING_PERIOD_S:
                return
            self._last_warning[reason] = now
        self.get_logger().warning(f"{text} [{reason}; counted, further '{reason}' warnings throttled]")

    def _drop(self, reason: str, text: str, count: int = 1) -> None:
        self.stats.count_drop(reason, count)
        self._warn(reason, f"dropping frame: {text}")

    def _stamp_problem(self, stamp_ns: int) -> str | None:
        """'stale' or 'future' when the stamp is farther than max_frame_age from the node clock, else None."""
        limit = self.config.max_frame_age
        now_ns = self.get_clock().now().nanoseconds
        if limit <= 0 or now_ns == 0:  # disabled, or sim time before the first /clock message
            return None
        age = (now_ns - stamp_ns) / 1e9
        if age > limit:
            return "stale"
        if -age > limit:
            return "future"
        return None

    def _on_frame(self, *msgs) -> None:
        """Synchronized input set (in the order of ``_input_order``): decode, check, enqueue. Never raises."""
        self.stats.count_frame()
        try:
            self._accept_frame(dict(zip(self._input_order, msgs)))
        except Exception as error:  # noqa: BLE001 -- no input may stop the node
            self._drop("error", f"unexpected {type(error).__name__}: {error}")

    def _accept_frame(self, by_topic: dict) -> None:
        """Decode and check one synchronized set ({relative topic: message}); enqueue it or count why not."""
        color_msg, info_msg = by_topic[COLOR_TOPIC], by_topic[INFO_TOPIC]
        stamp_ns = stamp_to_ns(color_msg.header.stamp)
        frame_id = color_msg.header.frame_id
        problem = self._stamp_problem(stamp_ns)
        if problem is not None:
            now = self.get_clock().now().nanoseconds
            self._drop(problem, f"stamp {stamp_ns / 1e9:.3f} s is {abs(now - stamp_ns) / 1e9:.1f} s "
                                f"{'behind' if problem == 'stale' else 'ahead of'} the node clock "
                                f"(max_frame_age {self.config.max_frame_age} s; bags need --clock and use_sim_time)")
            return
        if not frame_id:
            self._drop("no_frame_id", "color image without header.frame_id")
            return
        try:
            camera = camera_from_camera_info(info_msg)
            color = decode_color_image(color_msg)
            depth = decode_depth_image(by_topic[DEPTH_TOPIC]) if DEPTH_TOPIC in by_topic else None
            labels = decode_label_image(by_topic[LABELS_TOPIC]) if LABELS_TOPIC in by_topic else None
        except UnsupportedEncodingError as error:
            self._drop("encoding", str(error))
            return
        except MalformedImageError as error:
            self._drop("malformed", str(error))
            return
        except InvalidCameraInfoError as error:
            self._drop("camera_info", str(error))
            return
        sizes = {"color": color.shape[:2], "depth": None if depth is None else depth.shape,
                 "labels": None if labels is None else labels.shape}
        mismatched = {name: shape for name, shape in sizes.items() if shape is not None and shape != camera.shape}
        if mismatched:
            described = ", ".join(f"{name} {shape[1]}x{shape[0]}" for name, shape in mismatched.items())
            self._drop("size_mismatch", f"camera_info is {camera.width}x{camera.height} but {described}")
            return
        frame = PendingFrame(stamp_ns, frame_id, camera, color, depth, labels, self._generation)
        if self.queue.put(frame) is not None:
            self._drop("queue_full", f"integration is slower than the input (queue_size {self.queue.capacity}); "
                                     "dropped the oldest queued frame")

    # ------------------------------------------------------------------ integration worker
    def _work(self) -> None:
        """Worker loop: integrate queued frames until stopped, then fuse what is still queued."""
        while True:
            frame = self.queue.get(timeout=0.1)
            if frame is None:
                if self._stop.is_set():
                    return
                continue
            try:
                self._integrate(frame)
            except Exception as error:  # noqa: BLE001 -- the worker must survive anything a frame triggers
                self.stats.count_drop("error")
                self.get_logger().error(f"integration failed: {type(error).__name__}: {error}",
                                        throttle_duration_sec=WARNING_PERIOD_S)

    def _camera_pose(self, frame: PendingFrame) -> np.ndarray | None:
        """(4, 4) ``T_world_cam`` at the frame's stamp from TF, or None (counted) when unavailable."""
        timeout = 0.0 if self._stop.is_set() else self.config.tf_timeout  # no new TF arrives after shutdown
        try:
            transform = self.tf_buffer.lookup_transform(
                self.config.world_frame, frame.frame_id, Time(nanoseconds=frame.stamp_ns),
                timeout=Duration(nanoseconds=round(timeout * 1e9)))
        except TransformException as error:
            self._drop("tf", f"no camera pose {self.config.world_frame} <- {frame.frame_id} at "
                             f"{frame.stamp_ns / 1e9:.3f} s: {error}")
            return None
        return transform_to_matrix(transform)

    def _integrate(self, frame: PendingFrame) -> None:
        T_world_cam = self._camera_pose(frame)
        if T_world_cam is None:
            return
        cfg = self.config
        with self.volume_lock:
            if frame.generation != self._generation:
                self._drop("reset", "received before the last map reset")
                return
            start = time.perf_counter()
            try:
                if cfg.rgb_only:
                    features = frame.color.astype(np.float32) / np.float32(255)
                    self.volume.integrate_features(features, frame.camera, T_world_cam, max_range=cfg.rgb_only_max_range)
                else:
                    stats = self.volume.integrate(frame.depth, frame.camera, T_world_cam, color=frame.color,
                                                  labels=frame.labels)
                    if stats.valid_pixels == 0:
                        self._drop("no_valid_depth", f"depth image at {frame.stamp_ns / 1e9:.3f} s has no valid "
                                                     "pixel in [volume.min_depth, volume.max_depth]")
                        return
            except ValueError as error:
                self._drop("invalid_frame", str(error))
                return
            seconds = time.perf_counter() - start
            self._map_version += 1
            self._map_stamp_ns = max(self._map_stamp_ns, frame.stamp_ns)
            self._map_size = (self.volume.num_blocks, self.volume.memory_bytes())
        self.stats.count_integration(seconds)
        if self._network_computing.is_set():
            self.completion_stats.count_integration_while_computing()

    # ------------------------------------------------------------------ completion
    def _complete(self) -> None:
        """Completion thread: every completion_period s, rerun the network on the chunks whose observations changed."""
        period = self.config.completion_period
        next_run = time.monotonic() + period
        while not self._stop.wait(max(0.0, next_run - time.monotonic())):
            next_run = time.monotonic() + period
            stamp_ns = self._map_stamp_ns  # every observation up to this stamp is in the run's plan
            try:
                stats = self.engine.run(lock=self.volume_lock, cancelled=self._stop.is_set,
                                        run_network=self._run_network)
            except Exception as error:  # noqa: BLE001 -- completion must not stop the mapper
                self.completion_stats.count_error()
                self.get_logger().error(f"completion failed: {type(error).__name__}: {error}",
                                        throttle_duration_sec=WARNING_PERIOD_S)
                continue
            if stats.chunks_run:
                with self.volume_lock:  # the predictions changed the map: mesh and voxel map are redone
                    self._map_version += 1
                    self._map_size = (self.volume.num_blocks, self.volume.memory_bytes())
            caught_up = not stats.interrupted and stats.chunks_pending == 0
            self.completion_stats.count_run(stats, stamp_ns if caught_up else None)

    def _run_network(self, compute):
        """Run ``compute`` (the network on one batch; touches no shared state) on the low-priority network thread."""
        self._network_computing.set()
        try:
            return self._network_thread.submit(compute).result()
        finally:
            self._network_computing.clear()

    def _lower_thread_priority(self) -> None:
        """Raise the calling thread's nice value by COMPLETION_NICENESS (Linux: per thread)."""
        try:
            niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + COMPLETION_NICENESS)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except (AttributeError, OSError) as error:  # not Linux or not permitted: same priority as the rest
            self.get_logger().warning(f"the completion network runs at normal priority: {error}")

    # ------------------------------------------------------------------ outputs
    def _publish_outputs(self) -> None:
        """Output thread: mesh, voxel map and status at their rates (steady time) until stopped."""
        cfg = self.config
        schedule = [(period, task, time.monotonic() + period) for period, task in (
            (1.0 / cfg.mesh_rate if cfg.mesh_rate > 0 else 0.0, self.publish_mesh),
            (1.0 / cfg.voxel_map_rate if cfg.voxel_map_rate > 0 else 0.0, self.publish_voxel_map),
            (cfg.status_period, self.report_status)) if period > 0]
        while schedule and not self._stop.wait(max(0.0, min(due for _, _, due in schedule) - time.monotonic())):
            for index, (period, task, due) in enumerate(schedule):
                if time.monotonic() >= due:
                    try:
                        task()
                    except Exception as error:  # noqa: BLE001 -- publishing must go on after any failure
                        self.get_logger().error(f"{task.__name__} failed: {type(error).__name__}: {error}",
                                                throttle_duration_sec=WARNING_PERIOD_S)
                    schedule[index] = (period, task, max(due + period, time.monotonic()))

    def publish_mesh(self) -> None:
        """Mesh the map when it changed and publish the changed regions (everything for new subscribers).

        The whole volume is meshed while holding it, so after a mesh that took ``t`` seconds the next one
        waits ``t * (1 / MAX_MESH_TIME_SHARE - 1)``: on large maps updates come less often than mesh_rate.
        """
        with self._output_lock:
            subscribers = self.mesh_publisher.get_subscription_count()
            resend_all = subscribers > self._mesh_subscribers
            self._mesh_subscribers = subscribers
            if self._map_version == self._meshed_version and not resend_all or time.monotonic() < self._next_mesh_time:
                return
            with self.volume_lock:
                version, stamp_ns = self._map_version, self._map_stamp_ns
                start = time.perf_counter()
                mesh = extract_mesh(self.volume, source=self.mesh_source)
                seconds = time.perf_counter() - start
            # on a large map, meshing the whole volume takes long: leave the volume to integration in between
            self._next_mesh_time = time.monotonic() + seconds * (1 / MAX_MESH_TIME_SHARE - 1)
            colors = mesh_vertex_colors(mesh, self.classes, self.config.mesh_color_mode)
            markers, _ = self.mesh_markers.update(mesh, colors, stamp_ns, resend_all=resend_all)
            if markers:
                self.mesh_publisher.publish(serialize_marker_array(markers))
            self._meshed_version, self._mesh_stamp_ns = version, stamp_ns
        self.stats.count_mesh(seconds)

    def publish_voxel_map(self) -> None:
        """Publish the near-surface voxels when the map changed since the last publication."""
        with self._output_lock:
            if self._map_version == self._voxel_map_version:
                return
            with self.volume_lock:
                version, stamp_ns = self._map_version, self._map_stamp_ns
                points = surface_voxel_points(self.volume, self.config.voxel_map_distance, self.mesh_source)
            self.voxel_map_publisher.publish(voxel_points_to_pointcloud2(points, self.config.world_frame, stamp_ns))
            self._voxel_map_version = version

    def status(self) -> dict:
        """Counters, mean timings since the last call, queue, map size and memory (the ~/status JSON)."""
        summary = self.stats.period_summary()
        (blocks, volume_bytes), map_stamp_ns = self._map_size, self._map_stamp_ns  # no lock: never wait for a frame
        summary.update(queue=len(self.queue), queue_size=self.queue.capacity, blocks=blocks,
                       volume_mb=round(volume_bytes / 1e6, 1), rss_mb=round(resident_memory_bytes() / 1e6, 1),
                       mesh_regions=self.mesh_markers.num_regions, map_stamp_ns=map_stamp_ns,
                       mesh_stamp_ns=self._mesh_stamp_ns, map_version=self._map_version,
                       mesh_version=self._meshed_version, voxel_map_version=self._voxel_map_version)
        completion = {"checkpoint": str(self.checkpoint) if self.checkpoint else self.config.checkpoint,
                      "active": self.engine is not None, "error": self.completion_error,
                      "mesh_source": self.mesh_source}
        if self.engine is not None:
            completion.update(self.completion_stats.period_summary())
        summary["completion"] = completion
        return summary

    def report_status(self) -> None:
        """Log the status line and publish it on ~/status."""
        status = self.status()
        dropped = sum(status["dropped"].values())
        reasons = ", ".join(f"{reason} {count}" for reason, count in status["dropped"].items())
        unmatched = sum(status["messages_in"].values()) - len(self.input_topics) * status["frames_in"]

        def ms(value):
            return "-" if value is None else f"{value:.1f} ms"

        self.get_logger().info(
            f"frames in {status['frames_in']} (unmatched messages {unmatched}), integrated {status['integrated']}, "
            f"dropped {dropped}{f' ({reasons})' if reasons else ''}, queue {status['queue']}/{status['queue_size']}, "
            f"integrate {ms(status['integrate_ms'])}, mesh {ms(status['mesh_ms'])}, blocks {status['blocks']}, "
            f"volume {status['volume_mb']} MB, rss {status['rss_mb']} MB{completion_text(status['completion'])}")
        self.status_publisher.publish(String(data=json.dumps(status)))

    # ------------------------------------------------------------------ services
    def save_map(self) -> dict:
        """Write mesh_rgb.ply, mesh_semantic.ply and volume.pt (each atomically) into output_dir, from one
        consistent state of the map; returns their paths and sizes."""
        out = Path(os.path.expanduser(self.config.output_dir))
        out.mkdir(parents=True, exist_ok=True)
        with self.volume_lock:
            mesh = extract_mesh(self.volume, source=self.mesh_source)
            volume_path = self.volume.save(out / VOLUME_FILE)
            blocks, stamp_ns = self.volume.num_blocks, self._map_stamp_ns
        names = self.classes.names
        rgb_path = write_semantic_ply(out / MESH_RGB_FILE, mesh, names)
        semantic_path = write_semantic_ply(out / MESH_SEMANTIC_FILE, mesh, names, colors=self.classes.colorize(mesh.labels))
        return {"mesh_rgb": str(rgb_path), "mesh_semantic": str(semantic_path), "volume": str(volume_path),
                "triangles": mesh.num_triangles, "blocks": blocks, "map_stamp_ns": stamp_ns}

    def _on_save_map(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        del request
        try:
            saved = self.save_map()
        except (OSError, ValueError) as error:
            response.success, response.message = False, f"saving the map into {self.config.output_dir!r} failed: {error}"
            self.get_logger().error(response.message)
            return response
        response.success, response.message = True, json.dumps(saved)
        self.get_logger().info(f"saved the map: {saved['triangles']} triangles, {saved['blocks']} blocks -> "
                               f"{saved['mesh_rgb']}, {saved['mesh_semantic']}, {saved['volume']}")
        return response

    def reset_map(self) -> tuple[int, int]:
        """Empty the map and clear the published mesh and voxel map; returns (blocks cleared, queued frames discarded)."""
        with self._output_lock:
            with self.volume_lock:
                blocks = self.volume.num_blocks
                self.volume.clear()
                if self.engine is not None:
                    self.engine.reset()  # a completion run in progress writes nothing more
                    self.completion_stats.reset()
                self._generation += 1
                self._map_version += 1
                self._map_stamp_ns = 0
                self._map_size = (0, self.volume.memory_bytes())
                discarded = self.queue.clear()
                version = self._map_version
            stamp_ns = self.get_clock().now().nanoseconds
            self.mesh_publisher.publish(serialize_marker_array(self.mesh_markers.clear(stamp_ns)))
            self._meshed_version, self._mesh_stamp_ns = version, 0
            empty = np.zeros(0, VOXEL_POINT_DTYPE)
            self.voxel_map_publisher.publish(voxel_points_to_pointcloud2(empty, self.config.world_frame, stamp_ns))
            self._voxel_map_version = version
        if discarded:
            self.stats.count_drop("reset", discarded)
        return blocks, discarded

    def _on_reset_map(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        del request
        blocks, discarded = self.reset_map()
        response.success = True
        response.message = f"map reset: {blocks} blocks cleared, {discarded} queued frames discarded"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop the completion and output threads and the worker (after it fused the frames still queued), then
        save the map if save_on_shutdown."""
        self._stop.set()
        if self._completion_thread is not None:
            self._completion_thread.join()  # the network finishes its batch; no further batch starts
            self._network_thread.shutdown()
        self._output_thread.join()
        self._worker.join()
        if self.config.save_on_shutdown:
            try:
                saved = self.save_map()
            except (OSError, ValueError) as error:
                self.get_logger().error(f"saving the map on shutdown failed: {error}")
            else:
                self.get_logger().info(f"saved the map on shutdown: {saved['mesh_rgb']}, {saved['mesh_semantic']}, "
                                       f"{saved['volume']}")


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run semantic_recon_ros mapping_node`` (``--ros-args --params-file ...`` works).

    Returns 0 after Ctrl-C / shutdown (the map saved first when save_on_shutdown), 2 for bad parameters.
    """
    rclpy.init(args=args)
    try:
        node = MappingNode()
    except (ValueError, FileNotFoundError) as error:  # bad parameters, class file or device
        get_logger(NODE_NAME).fatal(str(error))
        rclpy.try_shutdown()
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        rclpy.try_shutdown()
        return 0
    try:
        executor = EventsExecutor() if EventsExecutor is not None else SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():  # EventsExecutor.spin() would not return when Ctrl-C shuts the context down
            executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
