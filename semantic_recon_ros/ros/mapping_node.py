"""The semantic mapping node: synchronized RGB-D (+ labels) and TF in; semantic mesh, voxel map and legend out.

Topics (relative names, remap them to the camera driver's):

=========================  =====================================  =========================================
name                       type                                   role
=========================  =====================================  =========================================
``color/image_raw``        sensor_msgs/Image                      in: rgb8, bgr8, rgba8, bgra8 or mono8
                                                                  (color_transport compressed: CompressedImage
                                                                  jpeg / png on color/image_raw/compressed)
``depth/image_raw``        sensor_msgs/Image                      in: 32FC1 metres or 16UC1 mm (not with rgb_only)
                                                                  (depth_transport compressed: CompressedImage
                                                                  compressedDepth png of 16UC1 / 32FC1 on
                                                                  depth/image_raw/compressedDepth)
``color/camera_info``      sensor_msgs/CameraInfo                 in: intrinsics of both images
``semantic/image_raw``     sensor_msgs/Image                      in (use_labels): mono8 / 16UC1 class ids
``/tf``, ``/tf_static``    tf2_msgs/TFMessage                     in: camera pose world_frame <- image frame
``mesh``                   visualization_msgs/MarkerArray         out, transient-local, depth 10: incremental
``mesh_additions``         visualization_msgs/MarkerArray         out, as ``mesh``: the completion network's
                                                                  additions, semi-transparent (ns
                                                                  ``mesh_additions``; none with rgb_only)
``voxel_map``              sensor_msgs/PointCloud2                out, transient-local: near-surface voxels
``single_view/mesh``       visualization_msgs/MarkerArray         out, transient-local (single_view.rate > 0): the
                                                                  newest frame's predicted scene, one marker in
                                                                  the camera's frame (ns ``single_view``)
``class_legend``           visualization_msgs/MarkerArray         out, latched: one text marker per class
``~/status``               std_msgs/String                        out: the status line's numbers as JSON
``/diagnostics``           diagnostic_msgs/DiagnosticArray        out: the same status, one DiagnosticStatus
``~/save_map``             std_srvs/Trigger                       writes mesh_rgb.ply, mesh_semantic.ply,
                                                                  volume.pt (and mesh_additions.ply with a
                                                                  network) into output_dir as one set
                                                                  (a new save folder, then ``current``;
                                                                  paths: JSON); inputs wait while the map
                                                                  is meshed (DDS queues them)
``~/load_map``             std_srvs/Trigger                       replaces the map by the one saved in
                                                                  output_dir, every layer (predictions too)
``~/reset_map``            std_srvs/Trigger                       empties the map (and the predictions)
=========================  =====================================  =========================================

The map itself is one :class:`~semantic_recon_ros.core.mapper.Mapper` (the same object ``semantic-recon
map`` and the trainer use); this node is subscriptions, TF, threads, services and message conversions
around it. ``initial_map`` starts the node from a saved map.

With a ``checkpoint``, a completion network (S4R, :mod:`semantic_recon_ros.core.completion`) predicts
the geometry, color and classes of the map, including space the camera never saw, each predicted voxel with a
calibrated confidence (:mod:`semantic_recon_ros.core.completion_confidence`). By default (``mesh_source``
observed) ``mesh`` shows the observed surface only and ``mesh_additions`` the surface the network adds where
nothing was observed and its confidence reaches ``completion.min_confidence``, drawn semi-transparent; the
voxel map holds both, its points flagged ``observed`` (0: filled by the network) with their
``surface_confidence``. Labels everywhere combine the fused 2D labels and the network's classes
(``completion.label_override_probability``, :mod:`semantic_recon_ros.core.surface_fields`). The default
``checkpoint`` is the installed default model; a checkpoint that cannot be used is logged as an error at
startup and the node maps by fusion only.

With ``rgb_only`` the node maps from color alone (no depth subscription) at most ``rgb_only_feature_rate`` frames
per second of their stamps (the frames in between are skipped as they arrive, before decoding, counted in
``skipped_frames``), by one of two geometries (``rgb_only_geometry``):

* ``stereo`` (default): the integration worker estimates each frame's depth from earlier frames of the camera by
  plane-sweep stereo (``stereo.*``, :mod:`semantic_recon_ros.core.multi_view_stereo`) and maps the frame exactly
  like an RGB-D frame (2D labels, completion network). Until the camera has moved ``stereo.min_baseline`` frames
  are dropped as ``no_stereo_source``.
* ``atlas``: the mapper back-projects the image features of the Atlas checkpoint (``checkpoint``, by default the
  installed ``models/atlas_default.pt``; :mod:`semantic_recon_ros.core.rgb_only_features`), and its network
  reconstructs geometry, classes and color from them on the completion thread exactly as the completion network
  runs (:mod:`semantic_recon_ros.core.rgb_only_completion`); ``mesh`` and ``voxel_map`` show its prediction. A
  checkpoint with 'deeplab' features gets the ``segmenter`` in its own process; the integration worker waits for
  its class probabilities (the input callbacks never do). A checkpoint that cannot be used stops the node (exit 2):
  without its network it maps nothing.

With ``single_view.rate`` > 0, the single-view network (``single_view.checkpoint``, by default the installed
``models/single_view_rgbd.pt``, or the image-only ``models/single_view_default.pt`` for ``rgb_only``) predicts the
scene of the newest integrated frame from its color (and depth) image, hidden
parts included, at most that many times a second on its own low-priority thread
(:mod:`semantic_recon_ros.core.live_single_view`), and ``single_view/mesh`` shows it in the frame's camera frame
(class palette). With ``single_view.fill_unobserved`` each prediction also fills the map's never-observed voxels
with ``single_view.fill_weight``, as predictions, never as observations
(:mod:`semantic_recon_ros.core.single_view_prediction`). A checkpoint that cannot be used is logged as an error and
the node maps without it.

Threads: the executor runs only light callbacks: the input callbacks check each message's stamp, the
synchronized sets are decoded, checked and enqueued into a bounded queue that drops its oldest frame when
full; TF, /clock, services. One worker thread takes frames from the queue, looks up the camera pose in TF
at the image stamp and fuses the frame through the mapper. A frame waits for missing TF at most until
``tf_timeout`` after its arrival, and not at all when the pose cannot come in time (camera frame never
seen in TF, or TF more than ``tf_timeout`` behind the frame), so a TF outage cannot hold up later frames.
One output thread publishes mesh, voxel map and status on a steady schedule. With a completion network,
the mapper's completion thread runs the network every ``completion_period`` seconds over the chunks whose
observations changed, on a low-priority thread (see :mod:`semantic_recon_ros.core.mapper`).
:func:`main` spins the node with rclpy's ``EventsExecutor`` where it exists (its per-message cost is far
below the Python executors', which could not keep up with 30 Hz RGB-D + TF + /clock on 2 cores).

Every input message that does not become part of a frame is counted in ``dropped_messages`` by reason:
``stale`` / ``future`` (stamp farther than max_frame_age from the node clock: dropped on arrival, before
the synchronizer, with a warning throttled per reason), and the synchronizer's ``unpaired`` (no partners
within sync_slop before it left its queue), ``out_of_order`` (older than the last set of its input by up
to 1 s; stamps further back restart the input), ``duplicate_stamp`` (see :mod:`.time_sync`; with
message_filters every unused message counts as ``unpaired``). ``sync_queued`` messages still wait for
partners: sum(messages_in) == inputs * frames_in + sum(dropped_messages) + sync_queued.

Every synchronized frame that is not fused is counted in ``dropped`` under a reason, with a warning
throttled per reason: ``stale`` / ``future`` (the clock moved while it waited for partners),
``encoding``, ``malformed``, ``camera_info``, ``size_mismatch``, ``no_frame_id``, ``queue_full``,
``tf``, ``no_stereo_source`` (stereo: no earlier frame to match yet), ``no_valid_depth``, ``invalid_frame``,
``reset`` (queued before a reset or load), ``error``
(an unexpected exception, logged; the node keeps running): frames_in == integrated + sum(dropped).
``tf_discarded`` counts /tf transforms discarded as stamped far from their frame's history (fallback
TF buffer only).
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
from rclpy.signals import SignalHandlerOptions
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ..core.camera import PinholeCamera
from ..core.classes import ClassSet
from ..core.completion import CompletionEngine
from ..core.concurrency import FrameQueue
from ..core.config import CompletionConfig, LiveSingleViewConfig, MapperConfig, StereoConfig, VolumeConfig
from ..core.frame_rate import StampRateGate
from ..core.keyframe_segmentation import KeyframeSegmentation
from ..core.live_single_view import LiveSingleView, SingleViewResult
from ..core.mapper import MapFrame, Mapper, MapState, map_folder
from ..core.mapping_statistics import MappingStatistics
from ..core.mesh import SemanticMesh
from ..core.multi_view_stereo import PlaneSweepStereo
from ..core.segmentation import confidence_weighted
from ..core.segmentation.process_segmenter import ProcessSegmenter
from ..core.single_view_prediction import SingleViewPredictor, resolve_single_view_checkpoint
from ..core.voxel_map import VOXEL_POINT_DTYPE
from .camera_info_conversions import InvalidCameraInfoError, camera_from_camera_info
from .diagnostics_conversions import status_diagnostics
from .header_conversions import stamp_to_ns
from .exit_deadline import exit_after
from .image_conversions import (
    MalformedImageError,
    UnsupportedEncodingError,
    decode_color_image,
    decode_compressed_color,
    decode_compressed_depth,
    decode_depth_image,
    decode_label_image,
)
from .mesh_conversions import (ADDITIONS_ALPHA, ADDITIONS_NAMESPACE, RegionMeshMarkers, class_legend_markers,
                               mesh_vertex_colors, serialize_marker_array, triangle_list_marker)
from .node_config import MappingNodeConfig
from .node_parameters import declare_sections
from .pointcloud_conversions import voxel_points_to_pointcloud2
from .shutdown_signals import ShutdownSignals, ignore_shutdown_signals
from .tf_buffer import Buffer, TransformException, TransformListener, lookup_transform_unless_futile
from .time_sync import ApproximateTimeSynchronizer, GateFilter, Subscriber, synchronizer_drops
from .transform_conversions import transform_to_matrix

try:  # rclpy >= Jazzy
    from rclpy.experimental import EventsExecutor
except ImportError:
    EventsExecutor = None

NODE_NAME = "mapping_node"
COLOR_TOPIC, DEPTH_TOPIC, INFO_TOPIC, LABELS_TOPIC = (
    "color/image_raw", "depth/image_raw", "color/camera_info", "semantic/image_raw")
MESH_TOPIC, VOXEL_MAP_TOPIC, LEGEND_TOPIC, STATUS_TOPIC = "mesh", "voxel_map", "class_legend", "~/status"
ADDITIONS_TOPIC = "mesh_additions"
SINGLE_VIEW_MESH_TOPIC, SINGLE_VIEW_NAMESPACE = "single_view/mesh", "single_view"
# image input -> {transport parameter value: (topic suffix, message type, decoder)}, as image_transport names them
IMAGE_TRANSPORTS = {
    COLOR_TOPIC: {"raw": ("", Image, decode_color_image),
                  "compressed": ("/compressed", CompressedImage, decode_compressed_color)},
    DEPTH_TOPIC: {"raw": ("", Image, decode_depth_image),
                  "compressed": ("/compressedDepth", CompressedImage, decode_compressed_depth)},
}
DIAGNOSTICS_TOPIC = "/diagnostics"
SPIN_TIMEOUT_S = 0.2  # bounds the reaction time to SIGINT / SIGTERM (seen when spin_once returns)
SPIN_EXIT_TIMEOUT_S = 5.0  # after a signal, longest wait for the executor to return before shutting down without it
WARNING_PERIOD_S = 5.0  # per drop reason
RELEASE_TIMEOUT_S = 10.0  # longest wait for rclpy to release the node at exit (the map is saved before)
RELEASE_GRACE_S = 2.0  # past RELEASE_TIMEOUT_S, when a hang in rclpy holds the GIL, the C-level deadline ends it
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


def weigh_by_depth_confidence(probs: np.ndarray, frame: MapFrame) -> np.ndarray:
    """Keyframe probabilities scaled by the depth-based label confidence (weaker votes near depth edges and far away)."""
    return confidence_weighted(probs, frame.depth, frame.camera)


class ThrottledLog:
    """The node's logger as the mapper's :class:`~semantic_recon_ros.core.mapper.Log`, throttled per call site."""

    def __init__(self, logger) -> None:
        self._logger = logger

    def error(self, message: str) -> None:
        self._logger.error(message, throttle_duration_sec=WARNING_PERIOD_S)

    def warning(self, message: str) -> None:
        self._logger.warning(message, throttle_duration_sec=WARNING_PERIOD_S)


LARGE_IMAGE_BYTES = 1_000_000  # over best-effort DDS, images this large lose fragments (measured: 640x480 lost 37 %)


def input_hints(input_qos: str, messages_in: dict, color_topic: str, info_topic: str,
                announced_image_bytes: int) -> list[str]:
    """What the user can do about inputs that do not arrive: large color images on a best-effort subscription
    (camera_info arrives, few images do) lose fragments and never arrive whole."""
    infos, colors = messages_in.get(info_topic, 0), messages_in.get(color_topic, 0)
    if input_qos == "sensor_data" and announced_image_bytes >= LARGE_IMAGE_BYTES and infos >= 5 and colors < infos / 2:
        return [f"{infos} camera_info but only {colors} color images arrived: {announced_image_bytes / 1e6:.1f} MB "
                f"images over best-effort QoS (input_qos sensor_data) lose fragments; set input_qos:=reliable and "
                f"FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for publisher and node"]
    return []


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
        received: ``time.monotonic()`` seconds when the frame was enqueued (its TF wait counts from there).
    """

    stamp_ns: int
    frame_id: str
    camera: PinholeCamera
    color: np.ndarray
    depth: np.ndarray | None
    labels: np.ndarray | None
    generation: int
    received: float


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
        self._feature_segmenter: ProcessSegmenter | None = None  # RGB-only 'deeplab' features only
        self.mapper = self._make_mapper(mapper_config, volume_config, sections[CompletionConfig])
        # RGB-only with stereo geometry: each frame's depth from earlier frames (integration worker only)
        self.stereo = (PlaneSweepStereo(sections[StereoConfig], self.mapper.volume.device) if self.config.stereo
                       else None)
        # RGB-only: frames admitted by their stamps; the others are skipped on arrival (executor thread only)
        self._feature_rate = StampRateGate(self.config.rgb_only_feature_rate) if self.config.rgb_only else None
        self._skipped_frames = 0
        self._checkpoint_parameter = mapper_config.checkpoint
        self._report_network(mapper_config)
        if self.config.initial_map:
            self._load_initial_map(self.config.initial_map)
        self._remove_save_leftovers()
        self.queue = FrameQueue(self.config.queue_size)
        self.mesh_markers = RegionMeshMarkers(self.config.world_frame)
        self.additions_markers = RegionMeshMarkers(self.config.world_frame, ADDITIONS_NAMESPACE, ADDITIONS_ALPHA)
        self._mesh_revisions: dict[str, int] = {}  # per mesh source: the mapper's region revision last published
        self._meshed_version = -1
        self._mesh_stamp_ns = 0
        self._mesh_subscribers = self._additions_subscribers = 0
        self._next_mesh_time = 0.0  # monotonic time before which no new mesh is extracted
        self._voxel_map_version = -1
        self._output_lock = threading.Lock()  # mesh / voxel map publication state (taken before the map's lock)
        self._last_warning: dict[str, float] = {}
        self._announced_image_bytes = 0  # color image size the newest camera_info announces (rgb8)
        self._warning_lock = threading.Lock()

        self.tf_buffer = Buffer(node=self)
        self.tf_listener = TransformListener(self.tf_buffer, self)

        self.mesh_publisher = self.create_publisher(MarkerArray, MESH_TOPIC, MESH_QOS)
        self.additions_publisher = self.create_publisher(MarkerArray, ADDITIONS_TOPIC, MESH_QOS)
        self.voxel_map_publisher = self.create_publisher(PointCloud2, VOXEL_MAP_TOPIC, LATCHED_QOS)
        self.legend_publisher = self.create_publisher(MarkerArray, LEGEND_TOPIC, LATCHED_QOS)
        self.status_publisher = self.create_publisher(String, STATUS_TOPIC, 10)
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.single_view_publisher = self.create_publisher(MarkerArray, SINGLE_VIEW_MESH_TOPIC, LATCHED_QOS)

        self.input_group = MutuallyExclusiveCallbackGroup()
        self.service_group = MutuallyExclusiveCallbackGroup()
        self.input_topics = self._subscribe_inputs()
        self.create_service(Trigger, "~/save_map", self._on_save_map, callback_group=self.service_group)
        self.create_service(Trigger, "~/reset_map", self._on_reset_map, callback_group=self.service_group)
        self.create_service(Trigger, "~/load_map", self._on_load_map, callback_group=self.service_group)

        self.legend_publisher.publish(serialize_marker_array(
            class_legend_markers(self.classes, self.config.world_frame, self.get_clock().now().nanoseconds)))
        self.segmentation, self.segmenter_error = self._start_segmentation()  # before the threads that use it
        self.single_view_config: LiveSingleViewConfig = sections[LiveSingleViewConfig]
        self.single_view, self.single_view_error = self._start_single_view(self.single_view_config)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="integration", daemon=True)
        self._worker.start()
        self._output_thread = threading.Thread(target=self._publish_outputs, name="outputs", daemon=True)
        self._output_thread.start()
        self.mapper.start_completion(mapper_config.completion_period, log=ThrottledLog(self.get_logger()))
        if self.config.atlas:
            mode = (f"rgb-only ({self.engine.network.config.feature_source} features of at most "
                    f"{self.config.rgb_only_feature_rate:g} frames/s)")
        elif self.config.stereo:
            rate = self.config.rgb_only_feature_rate
            mode = f"rgb-only (stereo depth of {f'at most {rate:g} frames/s' if rate > 0 else 'every frame'})"
        else:
            mode = "rgb-d" + (" + labels" if self.config.use_labels else "")
        completion = (f"completion by {self.checkpoint} every {mapper_config.completion_period:g} s, mesh source "
                      f"{self.mesh_source}" if self.engine is not None else "fusion only (no completion network)")
        self.get_logger().info(
            f"mapping {mode} in {self.config.world_frame!r} at {volume_config.voxel_size * 100:g} cm on "
            f"{self.mapper.volume.device}; inputs {', '.join(self.input_topics)} ({self.config.input_qos}); "
            f"{completion}; {self._segmentation_text()}; {self._single_view_text()}")

    def _make_mapper(self, config: MapperConfig, volume_config: VolumeConfig,
                     completion_config: CompletionConfig) -> Mapper:
        """The mapper of the parameters; ValueError / FileNotFoundError (bad parameters) naming the problem."""
        if not self.config.atlas:
            return Mapper.from_config(config, volume_config, completion_config, strict_checkpoint=False)
        try:
            return Mapper.from_config(config, volume_config, completion_config, self.config.rgb_only_max_range,
                                      segmenter_factory=self._start_feature_segmenter)
        except (ValueError, FileNotFoundError) as error:
            raise type(error)(f"rgb_only: {error}") from None

    def _start_feature_segmenter(self, classes: ClassSet) -> ProcessSegmenter:
        """The ``segmenter`` in its own process, for an RGB-only checkpoint with 'deeplab' features."""
        if not self.config.segmenter:
            raise ValueError("the Atlas checkpoint's 'deeplab' features need the 2D segmenter: set the segmenter "
                             "parameter")
        # at the node's priority (unlike the keyframe segmentation): every back-projected frame waits for it
        self._feature_segmenter = ProcessSegmenter(self.config.segmenter, classes.names, num_threads=1, niceness=0)
        return self._feature_segmenter

    def _start_segmentation(self) -> tuple[KeyframeSegmentation | None, str | None]:
        """The keyframe segmentation of the ``segmenter`` parameter, or (None, why) when it cannot run."""
        spec = self.config.segmenter
        if not spec or self.config.atlas:
            return None, None
        try:
            segmenter = ProcessSegmenter(spec, self.classes.names, num_threads=1)  # never holds this process's GIL
            segmentation = KeyframeSegmentation(self.mapper, segmenter, self.config.segmentation_rate,
                                                weigh=weigh_by_depth_confidence, log=ThrottledLog(self.get_logger()))
        except (FileNotFoundError, ValueError, RuntimeError) as error:
            self.get_logger().error(f"segmenter {spec!r} cannot be used, mapping without live segmentation: {error}")
            return None, str(error)
        return segmentation, None

    def _start_single_view(self, config: LiveSingleViewConfig) -> tuple[LiveSingleView | None, str | None]:
        """The live single-view prediction of the ``single_view.*`` parameters, or (None, why) when it is off
        (rate 0: no reason) or cannot run."""
        if config.rate <= 0:
            return None, None
        fill = config.fill_unobserved and not self.config.atlas
        if config.fill_unobserved and self.config.atlas:
            self.get_logger().warning("single_view.fill_unobserved is ignored with rgb_only_geometry atlas: the map "
                                      "observes nothing")
        try:
            predictor = SingleViewPredictor.from_checkpoint(resolve_single_view_checkpoint(config.checkpoint),
                                                            self.mapper.volume.device)
            single_view = LiveSingleView(self.mapper, predictor, config.rate, self._publish_single_view,
                                         config.fill_weight if fill else None, log=ThrottledLog(self.get_logger()))
        except (FileNotFoundError, ValueError) as error:
            self.get_logger().error(f"single_view.checkpoint {config.checkpoint!r} cannot be used, mapping without "
                                    f"single-view prediction: {error}")
            return None, str(error)
        return single_view, None

    def _single_view_text(self) -> str:
        if self.single_view is None:
            return "no single-view prediction" + (f" ({self.single_view_error})" if self.single_view_error else "")
        fill = (f", filling unobserved voxels with weight {self.single_view.fill_weight:g}"
                if self.single_view.fill_weight is not None else "")
        source = "color and depth" if self.single_view.predictor.needs_depth else "color"
        return f"single-view prediction from {source} at most {self.single_view_config.rate:g}/s{fill}"

    def _publish_single_view(self, result: SingleViewResult) -> None:
        """Publish a prediction's mesh on single_view/mesh: one marker in the frame's camera frame, class colors."""
        marker = triangle_list_marker(result.mesh, result.mesh.colors, result.frame_id, result.stamp_ns, 0,
                                      ns=SINGLE_VIEW_NAMESPACE)
        self.single_view_publisher.publish(serialize_marker_array([marker]))

    def _segmentation_text(self) -> str:
        if self.segmentation is None:
            return "no live segmentation" + (f" ({self.segmenter_error})" if self.segmenter_error else "")
        return f"segmenting keyframes with {self.segmentation.segmenter!r} at most {self.config.segmentation_rate:g}/s"

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
                                   f"{self.engine.config.chunk_size}^3 voxels, convolutions in "
                                   f"{str(self.engine.network_dtype).removeprefix('torch.')}")

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
        """Create the synchronized subscriptions; returns their resolved topic names.

        A compressed image input subscribes, like image_transport, to the resolved (remapped) raw topic name plus
        the transport's suffix; inputs keep their relative raw names as keys (``_input_order``, statistics).
        """
        cfg = self.config
        topics = [COLOR_TOPIC] + ([] if cfg.rgb_only else [DEPTH_TOPIC]) + [INFO_TOPIC]
        topics += [LABELS_TOPIC] if cfg.use_labels else []
        transports = {COLOR_TOPIC: cfg.color_transport, DEPTH_TOPIC: cfg.depth_transport}
        qos = input_qos_profile(cfg.input_qos, cfg.sync_queue_size)
        self._input_gates = []  # subscriber -> stamp check -> synchronizer
        self._image_decoders = {}
        names = []
        for topic in topics:
            name, msg_type = topic, CameraInfo if topic == INFO_TOPIC else Image
            if topic in transports:
                suffix, msg_type, self._image_decoders[topic] = IMAGE_TRANSPORTS[topic][transports[topic]]
                if suffix:
                    name = self.resolve_topic_name(topic) + suffix
            subscriber = Subscriber(self, msg_type, name, qos_profile=qos, callback_group=self.input_group)
            self._input_gates.append(GateFilter(subscriber, self._admit_message, topic))
            names.append(self.resolve_topic_name(name))
        self._input_order = topics
        self._synchronizer = ApproximateTimeSynchronizer(self._input_gates, cfg.sync_queue_size, cfg.sync_slop)
        self._synchronizer.registerCallback(self._on_frame)
        return names

    def _admit_message(self, msg, topic: str) -> bool:
        """Count an input message; False (counted, warned) when its stamp is farther than max_frame_age from the
        node clock: such a message never reaches the synchronizer, where it could mislead the pairing."""
        self.stats.count_message(topic)
        if topic == INFO_TOPIC:
            self._announced_image_bytes = int(msg.width) * int(msg.height) * 3
        stamp_ns = stamp_to_ns(msg.header.stamp)
        problem = self._stamp_problem(stamp_ns)
        if problem is None:
            return True
        self.stats.count_message_drop(problem)
        self._warn(problem, f"dropping {topic} message: {self._stamp_text(stamp_ns, problem)}")
        return False

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

    def _stamp_text(self, stamp_ns: int, problem: str) -> str:
        now = self.get_clock().now().nanoseconds
        return (f"stamp {stamp_ns / 1e9:.3f} s is {abs(now - stamp_ns) / 1e9:.1f} s "
                f"{'behind' if problem == 'stale' else 'ahead of'} the node clock "
                f"(max_frame_age {self.config.max_frame_age} s; bags need --clock and use_sim_time)")

    def _on_frame(self, *msgs) -> None:
        """Synchronized input set (in the order of ``_input_order``): decode, check, enqueue. Never raises.

        RGB-only: a set beyond ``rgb_only_feature_rate`` is skipped first (``skipped_frames``; its messages count in
        ``dropped_messages`` as ``feature_rate``), before anything is decoded."""
        if self._feature_rate is not None and not self._feature_rate.admit(stamp_to_ns(msgs[0].header.stamp)):
            self._skipped_frames += 1
            self.stats.count_message_drop("feature_rate", len(msgs))
            return
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
        problem = self._stamp_problem(stamp_ns)  # the messages passed on arrival; the clock may have moved since
        if problem is not None:
            self._drop(problem, self._stamp_text(stamp_ns, problem))
            return
        if not frame_id:
            self._drop("no_frame_id", "color image without header.frame_id")
            return
        try:
            camera = camera_from_camera_info(info_msg)
            color = self._image_decoders[COLOR_TOPIC](color_msg)
            depth = self._image_decoders[DEPTH_TOPIC](by_topic[DEPTH_TOPIC]) if DEPTH_TOPIC in by_topic else None
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
        frame = PendingFrame(stamp_ns, frame_id, camera, color, depth, labels, self.mapper.generation,
                             time.monotonic())
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
        """(4, 4) ``T_world_cam`` at the frame's stamp from TF, or None (counted) when unavailable.

        Waits for missing TF until ``tf_timeout`` after the frame's arrival (so frames queued together share
        one wait), and not at all when the pose cannot arrive in time (see lookup_transform_unless_futile).
        """
        wait = frame.received + self.config.tf_timeout - time.monotonic()
        wait = 0.0 if self._stop.is_set() else max(0.0, wait)  # no new TF arrives after shutdown
        try:
            transform = lookup_transform_unless_futile(
                self.tf_buffer, self.config.world_frame, frame.frame_id, Time(nanoseconds=frame.stamp_ns),
                timeout=Duration(nanoseconds=round(wait * 1e9)),
                max_lag=Duration(nanoseconds=round(self.config.tf_timeout * 1e9)))
        except TransformException as error:
            self._drop("tf", f"no camera pose {self.config.world_frame} <- {frame.frame_id} at "
                             f"{frame.stamp_ns / 1e9:.3f} s: {error}")
            return None
        return transform_to_matrix(transform)

    def _integrate(self, frame: PendingFrame) -> None:
        T_world_cam = self._camera_pose(frame)
        if T_world_cam is None:
            return
        depth = frame.depth
        if self.stereo is not None:
            depth = self.stereo.estimate(frame.color, frame.camera, T_world_cam)
            if depth is None:
                self._drop("no_stereo_source", "no earlier frame is a stereo source yet (the camera must move "
                                               f"{self.stereo.config.min_baseline:g} m)")
                return
        map_frame = MapFrame(frame.camera, T_world_cam, frame.color, depth, frame.labels, stamp_ns=frame.stamp_ns)
        try:
            stats = self.mapper.integrate(map_frame, generation=frame.generation)
        except ValueError as error:
            self._drop("invalid_frame", str(error))
            return
        if stats is None:
            self._drop("reset", "received before the last map reset or load")
        elif stats.valid_pixels == 0 and not self.config.atlas:
            self._drop("no_valid_depth", f"{'stereo depth' if self.stereo else 'depth image'} at "
                                         f"{frame.stamp_ns / 1e9:.3f} s has no valid pixel in "
                                         "[volume.min_depth, volume.max_depth]")
        else:
            if self.segmentation is not None:
                self.segmentation.offer(map_frame, frame.generation)
            if self.single_view is not None:
                self.single_view.offer(map_frame, frame.generation, frame.frame_id)

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
        """Publish the regions of the mesh that changed since the last update (everything for new subscribers):
        the mesh of ``mesh_source`` on ``mesh`` and, with a completion network, its additions on ``mesh_additions``.

        The mapper re-meshes only the regions whose blocks changed, in short holds of the map; if that still took
        ``t`` seconds, the next update waits ``t * (1 / MAX_MESH_TIME_SHARE - 1)``.
        """
        with self._output_lock:
            subscribers = self.mesh_publisher.get_subscription_count()
            additions_subscribers = self.additions_publisher.get_subscription_count()
            resend_all = subscribers > self._mesh_subscribers
            resend_additions = additions_subscribers > self._additions_subscribers
            self._mesh_subscribers, self._additions_subscribers = subscribers, additions_subscribers
            unchanged = (self.mapper.state.version == self._meshed_version and not resend_all
                         and not resend_additions)
            if unchanged or time.monotonic() < self._next_mesh_time:
                return
            outputs = [(self.mesh_source, self.mesh_markers, self.mesh_publisher, resend_all)]
            if self.mapper.has_additions:
                outputs.append(("additions", self.additions_markers, self.additions_publisher, resend_additions))
            start = time.perf_counter()
            changes, state = self.mapper.mesh_changes(
                {source: 0 if resend else self._mesh_revisions.get(source, 0) for source, _, _, resend in outputs})
            seconds = time.perf_counter() - start
            self._next_mesh_time = time.monotonic() + seconds * (1 / MAX_MESH_TIME_SHARE - 1)

            def colors(mesh: SemanticMesh):
                return mesh_vertex_colors(mesh, self.classes, self.config.mesh_color_mode)

            for source, markers_of, publisher, resend in outputs:
                regions, self._mesh_revisions[source] = changes[source]
                meshes = {region: None if piece is None else piece.mesh for region, piece in regions.items()}
                markers, _ = markers_of.update(meshes, colors, state.stamp_ns, resend_all=resend)
                if markers:
                    publisher.publish(serialize_marker_array(markers))
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
        """Counters, mean timings since the last call, queue, map size and memory (the ~/status JSON); RGB-only:
        ``skipped_frames``, the frames skipped over ``rgb_only_feature_rate``."""
        summary = self.stats.period_summary()
        summary.update(self._message_drops(summary))
        state = self.mapper.state  # no lock: never wait for a frame
        summary.update(queue=len(self.queue), queue_size=self.queue.capacity, blocks=state.blocks,
                       volume_mb=round(state.volume_bytes / 1e6, 1), rss_mb=round(resident_memory_bytes() / 1e6, 1),
                       mesh_regions=self.mesh_markers.num_regions,
                       additions_regions=self.additions_markers.num_regions, map_stamp_ns=state.stamp_ns,
                       mesh_stamp_ns=self._mesh_stamp_ns, map_version=state.version,
                       mesh_version=self._meshed_version, voxel_map_version=self._voxel_map_version,
                       skipped_frames=self._skipped_frames)
        completion = {"checkpoint": str(self.checkpoint) if self.checkpoint else self._checkpoint_parameter,
                      "active": self.engine is not None, "error": self.completion_error,
                      "mesh_source": self.mesh_source}
        if self.engine is not None:
            completion.update(self.mapper.completion_stats.period_summary())
        summary["completion"] = completion
        summary["hints"] = input_hints(self.config.input_qos, summary["messages_in"], COLOR_TOPIC, INFO_TOPIC,
                                       self._announced_image_bytes)
        summary["segmentation"] = {"segmenter": self.config.segmenter, "active": self.segmentation is not None,
                                   "error": self.segmenter_error}
        if self.segmentation is not None:
            summary["segmentation"].update(self.segmentation.stats.period_summary())
        summary["single_view"] = {"rate": self.single_view_config.rate, "active": self.single_view is not None,
                                  "error": self.single_view_error}
        if self.single_view is not None:
            summary["single_view"].update(self.single_view.stats.period_summary())
        return summary

    def _message_drops(self, summary: dict) -> dict:
        """``dropped_messages`` (stamp checks and synchronizer, by reason), ``sync_queued`` and ``tf_discarded``
        for the counters in ``summary`` (see the module docstring)."""
        checked = summary["dropped_messages"]
        offered = sum(summary["messages_in"].values()) - sum(checked.values())
        in_sets = len(self._input_order) * summary["frames_in"]
        synchronized, queued = synchronizer_drops(self._synchronizer, offered, in_sets)
        merged = {reason: checked.get(reason, 0) + synchronized.get(reason, 0) for reason in {*checked, *synchronized}}
        return {"dropped_messages": dict(sorted(merged.items())), "sync_queued": queued,
                "tf_discarded": getattr(self.tf_buffer, "discarded_transforms", None),
                "tf_invalid": getattr(self.tf_buffer, "invalid_transforms", None)}

    def report_status(self) -> None:
        """Log the status line and publish it on ~/status."""
        status = self.status()

        def counts(by_reason: dict) -> str:
            reasons = ", ".join(f"{reason} {count}" for reason, count in by_reason.items())
            return f"{sum(by_reason.values())}{f' ({reasons})' if reasons else ''}"

        def ms(value):
            return "-" if value is None else f"{value:.1f} ms"

        skipped = status["skipped_frames"]
        skipped_text = f" (skipped {skipped} over rgb_only_feature_rate)" if skipped else ""
        self.get_logger().info(
            f"frames in {status['frames_in']}{skipped_text}, integrated {status['integrated']}, "
            f"dropped {counts(status['dropped'])}; "
            f"messages dropped {counts(status['dropped_messages'])}, {status['sync_queued']} waiting for partners; "
            f"queue {status['queue']}/{status['queue_size']}, "
            f"integrate {ms(status['integrate_ms'])}, mesh {ms(status['mesh_ms'])}, blocks {status['blocks']}, "
            f"volume {status['volume_mb']} MB, rss {status['rss_mb']} MB{completion_text(status['completion'])}")
        for hint in status["hints"]:
            self._warn("hint", hint)
        self.status_publisher.publish(String(data=json.dumps(status)))
        self.diagnostics_publisher.publish(status_diagnostics(status, self.get_fully_qualified_name(),
                                                              self.get_clock().now().nanoseconds))

    # ------------------------------------------------------------------ services
    def save_map(self) -> dict:
        """Write mesh_rgb.ply, mesh_semantic.ply, volume.pt (and with a network mesh_additions.ply) of one state of
        the map into output_dir as one set (a new save folder that becomes ``current`` at once:
        :mod:`semantic_recon_ros.core.map_folder`); returns their paths and sizes."""
        return self.mapper.save(Path(os.path.expanduser(self.config.output_dir))).summary()

    def _remove_save_leftovers(self) -> None:
        """Remove what interrupted saves left in output_dir (skipped while another process saves into it)."""
        try:
            removed = map_folder(self.config.output_dir).remove_leftovers(wait=False)
        except OSError as error:
            self.get_logger().warning(f"could not remove leftovers of interrupted saves in {self.config.output_dir!r}: "
                                      f"{error}")
            return
        if removed:
            self.get_logger().info(f"removed leftovers of interrupted saves in {self.config.output_dir}: "
                                   f"{', '.join(removed)}")

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
                               f"{saved['folder']} (current in {self.config.output_dir})")
        return response

    def _clear_outputs(self, state: MapState) -> None:
        """Publish an empty mesh and voxel map for ``state`` (hold the output lock)."""
        stamp_ns = self.get_clock().now().nanoseconds
        self.mesh_publisher.publish(serialize_marker_array(self.mesh_markers.clear(stamp_ns)))
        self.additions_publisher.publish(serialize_marker_array(self.additions_markers.clear(stamp_ns)))
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
        save the map if save_on_shutdown. Call it while the rclpy context is valid (:func:`main` does): it logs."""
        self._stop.set()
        self.mapper.close()  # the network finishes its batch; no further batch starts
        if self.segmentation is not None:
            self.segmentation.close()  # the segmentation in progress is fused; no further one starts
        if self.single_view is not None:
            self.single_view.close()  # the prediction in progress is published; no further one starts
        self._output_thread.join()
        self._worker.join()
        if self._feature_segmenter is not None:
            self._feature_segmenter.close()
        if self.config.save_on_shutdown:
            try:
                saved = self.save_map()
            except (OSError, ValueError) as error:
                self.get_logger().error(f"saving the map on shutdown failed: {error}")
            else:
                self.get_logger().info(f"saved the map on shutdown: {saved['triangles']} triangles, {saved['blocks']} "
                                       f"blocks -> {saved['folder']} (current in {self.config.output_dir})")


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run semantic_recon_ros mapping_node`` (``--ros-args --params-file ...`` works).

    The first SIGINT or SIGTERM (Ctrl-C, ``ros2 launch`` stopping) stops spinning; the node then shuts down (the
    map saved first when save_on_shutdown) with the rclpy context still valid, so every log line reaches /rosout,
    and only then shuts rclpy down. Signals are received on a thread of their own (:mod:`.shutdown_signals`), so
    they are seen whatever the executor does; when the executor has not returned ``SPIN_EXIT_TIMEOUT_S`` after the
    signal, that thread shuts the node down (saving the map) and ends the process. Further signals are ignored until
    the process exits. Returns 0 after such a shutdown (a signal while the node starts takes effect once it has
    started), 2 for bad parameters.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)  # signals: handled below
    executor = EventsExecutor() if EventsExecutor is not None else SingleThreadedExecutor()
    # after the executor (newer EventsExecutors install SIGINT / SIGTERM handlers of their own); a signal while the
    # node starts is acted on once it has started
    signals = ShutdownSignals(NODE_NAME).install()
    try:
        node = MappingNode()
    except (ValueError, FileNotFoundError) as error:  # bad parameters, class file or device
        get_logger(NODE_NAME).fatal(str(error))
        executor.shutdown()
        rclpy.try_shutdown()
        ignore_shutdown_signals()
        return 2
    signals.logger_name = node.get_logger().name
    signals.doing = "saving the map" if node.config.save_on_shutdown else "shutting down"
    executor.add_node(node)
    shutdown = NodeShutdown(node, signals)
    signals.on_first(executor.wake)
    threading.Thread(target=shutdown.unless_spinning_ends, name="shutdown_watchdog", daemon=True).start()
    try:
        while signals.received is None and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    except ExternalShutdownException:
        pass
    except RuntimeError:
        if rclpy.ok():  # the context was not shut down under the executor: a real error (raised after the save)
            raise
    finally:
        shutdown.spinning_ended()
        # detach the node's entities while they and the context exist: an executor left to be torn down at exit,
        # after destroy_node() and rclpy's shutdown, now and then hung the process there
        executor.shutdown()
        shutdown.run()
        release_ros(node)
        ignore_shutdown_signals()
    return 0


class NodeShutdown:
    """The node's shutdown (:meth:`MappingNode.shutdown`, saving the map) run exactly once: by the main thread when
    the executor returns after the first signal, or else by :meth:`unless_spinning_ends` on its own thread."""

    def __init__(self, node: "MappingNode", signals: ShutdownSignals) -> None:
        self.node = node
        self.signals = signals
        self._claim = threading.Lock()
        self._spinning_ended = threading.Event()
        self._done = threading.Event()

    def spinning_ended(self) -> None:
        self._spinning_ended.set()

    def run(self) -> bool:
        """Shut the node down, or wait until the thread that already does it is done; True when this call did it."""
        if not self._claim.acquire(blocking=False):
            self._done.wait()
            return False
        try:
            if self.signals.received is not None:
                self.node.get_logger().info(f"{self.signals.received}: shutting down" + (
                    f", saving the map into {self.node.config.output_dir} first (further signals are ignored)"
                    if self.node.config.save_on_shutdown else ""))
            self.node.shutdown()
        finally:
            self._done.set()
        return True

    def unless_spinning_ends(self, timeout: float = SPIN_EXIT_TIMEOUT_S) -> None:
        """Watchdog thread: after the first signal, give the executor ``timeout`` seconds to return; if it does not,
        shut the node down from here and end the process (exit code 0) without waiting for it."""
        self.signals.wait()
        if self._spinning_ended.wait(timeout):
            return
        self.node.get_logger().error(f"the executor did not return within {timeout:g} s of {self.signals.received}: "
                                     "shutting down without it")
        if self.run():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def release_ros(node: Node, timeout: float = RELEASE_TIMEOUT_S) -> None:
    """``destroy_node`` and rclpy's shutdown, bounded: after the map is saved nothing may keep the process alive
    (rclpy's destroy_node hung under 30 Hz input, now and then); past ``timeout`` the process exits 0. When the hang
    holds the GIL (it did: the join below never returned), the C-level deadline of :func:`exit_after` ends the
    process ``RELEASE_GRACE_S`` later, without a message."""
    sys.stdout.flush()
    sys.stderr.flush()
    cancel_deadline = exit_after(timeout + RELEASE_GRACE_S, 0)

    def release() -> None:
        node.destroy_node()
        rclpy.try_shutdown()

    releaser = threading.Thread(target=release, name="release_ros", daemon=True)
    releaser.start()
    releaser.join(timeout)
    if releaser.is_alive():
        print(f"[{NODE_NAME}] releasing ROS resources took over {timeout:g} s after the map was saved: exiting",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(0)
    cancel_deadline()


if __name__ == "__main__":
    sys.exit(main())
