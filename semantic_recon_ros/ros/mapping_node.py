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
``/diagnostics``           diagnostic_msgs/DiagnosticArray        out: the same status, one DiagnosticStatus
``~/save_map``             std_srvs/Trigger                       writes mesh_rgb.ply, mesh_semantic.ply,
                                                                  volume.pt into output_dir (paths: JSON);
                                                                  inputs wait meanwhile (DDS queues them)
``~/load_map``             std_srvs/Trigger                       replaces the map by the one saved in
                                                                  output_dir, every layer (predictions too)
``~/reset_map``            std_srvs/Trigger                       empties the map (and the predictions)
=========================  =====================================  =========================================

The map itself is one :class:`~semantic_recon_ros.core.mapper.Mapper` (the same object ``semantic-recon
map`` and the trainer use); this node is subscriptions, TF, threads, services and message conversions
around it. ``initial_map`` starts the node from a saved map.

With a ``checkpoint``, a completion network (S4R, :mod:`semantic_recon_ros.core.completion`) predicts
the geometry, color and classes of the map, including space the camera never saw, and ``mesh_source``
chooses what the mesh, the voxel map and saved meshes show (observed, completed or both); voxel map
points the network filled alone have ``observed = 0``, and labels come from the fused 2D labels where a
voxel has votes, from the network elsewhere. The default ``checkpoint`` is the installed default model; a
checkpoint that cannot be used is logged as an error at startup and the node maps by fusion only.

Threads: the executor runs only light callbacks: the input callbacks decode, check and enqueue a
frame into a bounded queue that drops its oldest frame when full; TF, /clock, services. One worker
thread takes frames from the queue, looks up the camera pose in TF at the image stamp (waiting up to
``tf_timeout``) and fuses the frame through the mapper. One output thread publishes mesh, voxel map and
status on a steady schedule. With a completion network, the mapper's completion thread runs the network
every ``completion_period`` seconds over the chunks whose observations changed, on a low-priority thread
(see :mod:`semantic_recon_ros.core.mapper`).
:func:`main` spins the node with rclpy's ``EventsExecutor`` where it exists (its per-message cost is far
below the Python executors', which could not keep up with 30 Hz RGB-D + TF + /clock on 2 cores).

Every frame that is not fused is counted under a reason (``status`` lists them) with a warning
throttled per reason: ``stale`` / ``future`` (stamp farther than max_frame_age from the clock),
``encoding``, ``malformed``, ``camera_info``, ``size_mismatch``, ``no_frame_id``, ``queue_full``,
``tf``, ``no_valid_depth``, ``invalid_frame``, ``reset`` (queued before a reset or load), ``error``
(an unexpected exception, logged; the node keeps running).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
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
from ..core.classes import ClassSet
from ..core.completion import CompletionEngine
from ..core.concurrency import FrameQueue
from ..core.config import CompletionConfig, MapperConfig, VolumeConfig
from ..core.mapper import MapFrame, Mapper, MapState
from ..core.mapping_statistics import MappingStatistics
from ..core.voxel_map import VOXEL_POINT_DTYPE
from .camera_info_conversions import InvalidCameraInfoError, camera_from_camera_info
from .diagnostics_conversions import status_diagnostics
from .header_conversions import stamp_to_ns
from .image_conversions import (
    MalformedImageError,
    UnsupportedEncodingError,
    decode_color_image,
    decode_depth_image,
    decode_label_image,
)
from .mesh_conversions import RegionMeshMarkers, class_legend_markers, mesh_vertex_colors, serialize_marker_array
from .node_config import MappingNodeConfig
from .node_parameters import declare_sections
from .pointcloud_conversions import voxel_points_to_pointcloud2
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
DIAGNOSTICS_TOPIC = "/diagnostics"
WARNING_PERIOD_S = 5.0  # per drop reason
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


class ThrottledLog:
    """The node's logger as the mapper's :class:`~semantic_recon_ros.core.mapper.Log`, throttled per call site."""

    def __init__(self, logger) -> None:
        self._logger = logger

    def error(self, message: str) -> None:
        self._logger.error(message, throttle_duration_sec=WARNING_PERIOD_S)

    def warning(self, message: str) -> None:
        self._logger.warning(message, throttle_duration_sec=WARNING_PERIOD_S)


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


class MappingNode(Node):
    """Live semantic mapping (see the module docstring); parameters from :mod:`.node_parameters`.

    Args:
        node_name: ROS node name (the params-file key).
        **kwargs: passed to ``rclpy.node.Node`` (e.g. ``context``, ``parameter_overrides``).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        sections = declare_sections(self)
        self.config: MappingNodeConfig = sections[MappingNodeConfig]
        mapper_config: MapperConfig = sections[MapperConfig]
        volume_config: VolumeConfig = sections[VolumeConfig]
        if self.config.torch_threads > 0:
            torch.set_num_threads(self.config.torch_threads)
        if self.config.rgb_only and mapper_config.checkpoint:
            self.get_logger().info(f"checkpoint {mapper_config.checkpoint!r} not loaded: the completion network "
                                   f"completes a depth-fused TSDF, and rgb_only fuses image features only")
        self.mapper = Mapper.from_config(mapper_config, volume_config, sections[CompletionConfig],
                                         self.config.rgb_only_max_range if self.config.rgb_only else None,
                                         strict_checkpoint=False)
        self._checkpoint_parameter = mapper_config.checkpoint
        self._report_network(mapper_config)
        if self.config.initial_map:
            self._load_initial_map(self.config.initial_map)
        self.queue = FrameQueue(self.config.queue_size)
        self.mesh_markers = RegionMeshMarkers(self.config.world_frame, self.config.mesh_region_size)
        self._meshed_version = -1
        self._mesh_stamp_ns = 0
        self._mesh_subscribers = 0
        self._next_mesh_time = 0.0  # monotonic time before which no new mesh is extracted
        self._voxel_map_version = -1
        self._output_lock = threading.Lock()  # mesh / voxel map publication state (taken before the map's lock)
        self._last_warning: dict[str, float] = {}
        self._warning_lock = threading.Lock()

        self.tf_buffer = Buffer(node=self)
        self.tf_listener = TransformListener(self.tf_buffer, self)

        self.mesh_publisher = self.create_publisher(MarkerArray, MESH_TOPIC, MESH_QOS)
        self.voxel_map_publisher = self.create_publisher(PointCloud2, VOXEL_MAP_TOPIC, LATCHED_QOS)
        self.legend_publisher = self.create_publisher(MarkerArray, LEGEND_TOPIC, LATCHED_QOS)
        self.status_publisher = self.create_publisher(String, STATUS_TOPIC, 10)
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)

        self.input_group = MutuallyExclusiveCallbackGroup()
        self.service_group = MutuallyExclusiveCallbackGroup()
        self.input_topics = self._subscribe_inputs()
        self.create_service(Trigger, "~/save_map", self._on_save_map, callback_group=self.service_group)
        self.create_service(Trigger, "~/reset_map", self._on_reset_map, callback_group=self.service_group)
        self.create_service(Trigger, "~/load_map", self._on_load_map, callback_group=self.service_group)

        self.legend_publisher.publish(serialize_marker_array(
            class_legend_markers(self.classes, self.config.world_frame, self.get_clock().now().nanoseconds)))
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="integration", daemon=True)
        self._worker.start()
        self._output_thread = threading.Thread(target=self._publish_outputs, name="outputs", daemon=True)
        self._output_thread.start()
        self.mapper.start_completion(mapper_config.completion_period, log=ThrottledLog(self.get_logger()))
        mode = "rgb-only" if self.config.rgb_only else "rgb-d" + (" + labels" if self.config.use_labels else "")
        completion = (f"completion by {self.checkpoint} every {mapper_config.completion_period:g} s, mesh source "
                      f"{self.mesh_source}" if self.engine is not None else "fusion only (no completion network)")
        self.get_logger().info(
            f"mapping {mode} in {self.config.world_frame!r} at {volume_config.voxel_size * 100:g} cm on "
            f"{self.mapper.volume.device}; inputs {', '.join(self.input_topics)} ({self.config.input_qos}); "
            f"{completion}")

    # the mapper's settings, as the node's parameters resolved them
    @property
    def classes(self) -> ClassSet:
        return self.mapper.classes

    @property
    def engine(self) -> CompletionEngine | None:
        return self.mapper.engine

    @property
    def checkpoint(self) -> Path | None:
        return self.mapper.checkpoint

    @property
    def completion_error(self) -> str | None:
        return self.mapper.completion_error

    @property
    def mesh_source(self) -> str:
        return self.mapper.mesh_source

    def _report_network(self, config: MapperConfig) -> None:
        """Log the completion network in use, or why the requested one is not used."""
        if self.completion_error is not None:
            self.get_logger().error(f"checkpoint {config.checkpoint!r} cannot be used, mapping by fusion only "
                                    f"(no completion): {self.completion_error}")
        elif self.engine is not None:
            network = self.engine.network
            parameters = sum(p.numel() for p in network.parameters())
            self.get_logger().info(f"completion network {self.checkpoint}: {type(network).__name__}, "
                                   f"{parameters / 1e6:.2f} M parameters, chunks of "
                                   f"{self.engine.config.chunk_size}^3 voxels")

    def _load_initial_map(self, path: str) -> None:
        """Start from the map of the ``initial_map`` parameter (ValueError / FileNotFoundError: bad parameter)."""
        try:
            state = self.mapper.load(path)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"initial_map: {error}") from None
        except ValueError as error:
            raise ValueError(f"initial_map: {error}") from None
        self.get_logger().info(f"started from the map in {path}: {state.blocks} blocks")

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
        frame = PendingFrame(stamp_ns, frame_id, camera, color, depth, labels, self.mapper.generation)
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
        try:
            stats = self.mapper.integrate(MapFrame(frame.camera, T_world_cam, frame.color, frame.depth, frame.labels,
                                                   stamp_ns=frame.stamp_ns), generation=frame.generation)
        except ValueError as error:
            self._drop("invalid_frame", str(error))
            return
        if stats is None:
            self._drop("reset", "received before the last map reset or load")
        elif stats.valid_pixels == 0 and not self.config.rgb_only:
            self._drop("no_valid_depth", f"depth image at {frame.stamp_ns / 1e9:.3f} s has no valid "
                                         "pixel in [volume.min_depth, volume.max_depth]")

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
            unchanged = self.mapper.state.version == self._meshed_version and not resend_all
            if unchanged or time.monotonic() < self._next_mesh_time:
                return
            start = time.perf_counter()
            mesh, state = self.mapper.mesh()
            seconds = time.perf_counter() - start
            # on a large map, meshing the whole volume takes long: leave the volume to integration in between
            self._next_mesh_time = time.monotonic() + seconds * (1 / MAX_MESH_TIME_SHARE - 1)
            colors = mesh_vertex_colors(mesh, self.classes, self.config.mesh_color_mode)
            markers, _ = self.mesh_markers.update(mesh, colors, state.stamp_ns, resend_all=resend_all)
            if markers:
                self.mesh_publisher.publish(serialize_marker_array(markers))
            self._meshed_version, self._mesh_stamp_ns = state.version, state.stamp_ns
        self.stats.count_mesh(seconds)

    def publish_voxel_map(self) -> None:
        """Publish the near-surface voxels when the map changed since the last publication."""
        with self._output_lock:
            if self.mapper.state.version == self._voxel_map_version:
                return
            points, state = self.mapper.voxel_map(self.config.voxel_map_distance)
            self.voxel_map_publisher.publish(voxel_points_to_pointcloud2(points, self.config.world_frame,
                                                                         state.stamp_ns))
            self._voxel_map_version = state.version

    @property
    def stats(self) -> MappingStatistics:
        return self.mapper.stats

    def status(self) -> dict:
        """Counters, mean timings since the last call, queue, map size and memory (the ~/status JSON)."""
        summary = self.stats.period_summary()
        state = self.mapper.state  # no lock: never wait for a frame
        summary.update(queue=len(self.queue), queue_size=self.queue.capacity, blocks=state.blocks,
                       volume_mb=round(state.volume_bytes / 1e6, 1), rss_mb=round(resident_memory_bytes() / 1e6, 1),
                       mesh_regions=self.mesh_markers.num_regions, map_stamp_ns=state.stamp_ns,
                       mesh_stamp_ns=self._mesh_stamp_ns, map_version=state.version,
                       mesh_version=self._meshed_version, voxel_map_version=self._voxel_map_version)
        completion = {"checkpoint": str(self.checkpoint) if self.checkpoint else self._checkpoint_parameter,
                      "active": self.engine is not None, "error": self.completion_error,
                      "mesh_source": self.mesh_source}
        if self.engine is not None:
            completion.update(self.mapper.completion_stats.period_summary())
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
        self.diagnostics_publisher.publish(status_diagnostics(status, self.get_fully_qualified_name(),
                                                              self.get_clock().now().nanoseconds))

    # ------------------------------------------------------------------ services
    def save_map(self) -> dict:
        """Write mesh_rgb.ply, mesh_semantic.ply and volume.pt (each atomically) into output_dir, from one
        consistent state of the map; returns their paths and sizes."""
        return self.mapper.save(Path(os.path.expanduser(self.config.output_dir))).summary()

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

    def _clear_outputs(self, state: MapState) -> None:
        """Publish an empty mesh and voxel map for ``state`` (hold the output lock)."""
        stamp_ns = self.get_clock().now().nanoseconds
        self.mesh_publisher.publish(serialize_marker_array(self.mesh_markers.clear(stamp_ns)))
        self._meshed_version, self._mesh_stamp_ns = state.version, 0
        empty = np.zeros(0, VOXEL_POINT_DTYPE)
        self.voxel_map_publisher.publish(voxel_points_to_pointcloud2(empty, self.config.world_frame, stamp_ns))
        self._voxel_map_version = state.version

    def reset_map(self) -> tuple[int, int]:
        """Empty the map and clear the published mesh and voxel map; returns (blocks cleared, queued frames discarded)."""
        with self._output_lock:
            blocks, state = self.mapper.reset()
            discarded = self.queue.clear()
            self._clear_outputs(state)
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

    def load_map(self, path: str) -> tuple[MapState, int]:
        """Replace the map by a saved one (a ~/save_map folder or its volume.pt; every layer restored); the mesh
        and voxel map are resent in full. Returns (new state, queued frames discarded). Raises FileNotFoundError
        or ValueError (map unchanged)."""
        with self._output_lock:
            state = self.mapper.load(path)
            discarded = self.queue.clear()
            self._clear_outputs(state)
            self._meshed_version = self._voxel_map_version = -1  # publish the loaded map at the next update
        if discarded:
            self.stats.count_drop("reset", discarded)
        return state, discarded

    def _on_load_map(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        del request
        path = self.config.output_dir
        try:
            state, discarded = self.load_map(path)
        except (OSError, ValueError) as error:
            response.success, response.message = False, f"loading the map from {path!r} failed: {error}"
            self.get_logger().error(response.message)
            return response
        response.success = True
        response.message = json.dumps({"path": path, "blocks": state.blocks, "discarded_frames": discarded})
        self.get_logger().info(f"loaded the map from {path}: {state.blocks} blocks ({discarded} queued frames "
                               "discarded)")
        return response

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop the completion and output threads and the worker (after it fused the frames still queued), then
        save the map if save_on_shutdown."""
        self._stop.set()
        self.mapper.close()  # the network finishes its batch; no further batch starts
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
