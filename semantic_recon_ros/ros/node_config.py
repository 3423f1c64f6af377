"""Settings of the ROS 2 mapping node itself (topics, timing, outputs) and the node's parameter sections.

The node declares one parameter per field of every section in :data:`SECTIONS`: its own settings
(:class:`MappingNodeConfig`) and the :class:`~semantic_recon_ros.core.config.MapperConfig` at the top
level (``world_frame``, ``checkpoint``...), ``volume.*``, ``completion.*``, ``single_view.*`` and ``stereo.*``.
This module imports no ROS package: the parameter table (README, ``semantic-recon params``) is built without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.config import CompletionConfig, LiveSingleViewConfig, MapperConfig, StereoConfig, VolumeConfig
from ..core.config.fields import check_ranges, parameter

INPUT_QOS_CHOICES = ("sensor_data", "reliable", "system_default")
TRANSPORT_CHOICES = ("raw", "compressed")
MESH_COLOR_CHOICES = ("rgb", "semantic")


@dataclass
class MappingNodeConfig:
    """How the mapping node receives frames, schedules its work and publishes and saves the map."""

    world_frame: str = parameter(
        "world", "TF frame of the map; the camera pose is looked up as world_frame <- image header frame.")
    use_labels: bool = parameter(
        False, "Also subscribe to semantic/image_raw (class ids, mono8 or 16UC1) and fuse the labels.")
    rgb_only: bool = parameter(
        False, "Map without depth (no depth subscription), with the geometry of rgb_only_geometry. A checkpoint that "
               "cannot be used stops the node.")
    rgb_only_geometry: str = parameter(
        "stereo", "RGB-only mode: stereo = each frame's depth is estimated from earlier frames of the camera "
                  "(plane-sweep stereo, stereo.*), then mapped like an RGB-D frame (labels, completion network "
                  "and checkpoint as in RGB-D mode); atlas = the image features of the Atlas checkpoint "
                  "(checkpoint; \"default\" = the installed models/atlas_default.pt) are back-projected along the "
                  "camera rays and its network reconstructs the map from them every completion_period (mesh and "
                  "voxel map: its prediction; volume.feature_dim 0 takes the checkpoint's feature channels).",
        choices=("stereo", "atlas"))
    rgb_only_max_range: float = parameter(
        3.0, "RGB-only mode with atlas geometry: features fill each ray up to this distance (metres, at most "
             "volume.max_depth).", 0.1, 100.0)
    rgb_only_feature_rate: float = parameter(
        10.0, "RGB-only mode: most frames per second (of their stamps) mapped (features back-projected, or depth "
              "estimated by stereo); the frames in between are skipped on arrival (status skipped_frames). 0 takes "
              "every frame.", 0.0, 1000.0)
    input_qos: str = parameter(
        "sensor_data", "QoS of the image and camera_info subscriptions: sensor_data (best effort), reliable "
                       "or system_default.", choices=INPUT_QOS_CHOICES)
    color_transport: str = parameter(
        "raw", "How color images arrive: raw (sensor_msgs/Image on color/image_raw) or compressed "
               "(sensor_msgs/CompressedImage, jpeg or png, on color/image_raw/compressed, as image_transport's "
               "compressed plugin publishes them; the suffix follows a remapped color/image_raw).",
        choices=TRANSPORT_CHOICES)
    depth_transport: str = parameter(
        "raw", "How depth images arrive: raw (sensor_msgs/Image on depth/image_raw) or compressed "
               "(image_transport's compressedDepth, png of 16UC1 or 32FC1, on depth/image_raw/compressedDepth).",
        choices=TRANSPORT_CHOICES)
    sync_queue_size: int = parameter(
        10, "Messages per input kept by the approximate-time synchronizer while waiting for partners.", 1, 1000)
    sync_slop: float = parameter(
        0.02, "Largest stamp difference (seconds) between the images and camera_info of one frame.", 0.0, 1.0)
    queue_size: int = parameter(
        3, "Frames waiting for integration; when full, the oldest is dropped (counted as queue_full).", 1, 1000)
    tf_timeout: float = parameter(
        0.2, "Seconds after its arrival until which a frame waits for its camera pose in TF; frames whose pose "
             "cannot come in time (frame unknown to TF, TF more than this behind the frame) fail at once.",
        0.0, 10.0)
    max_frame_age: float = parameter(
        5.0, "Input messages stamped more than this many seconds before or after the node clock (sim time with "
             "use_sim_time) are dropped on arrival, before synchronization; 0 disables the check.", 0.0, 1e6)
    mesh_rate: float = parameter(
        1.0, "Mesh updates per second on the mesh topic (only changed regions are re-sent); 0 disables.",
        0.0, 100.0)
    mesh_color_mode: str = parameter(
        "rgb", "Mesh colors: rgb (fused camera color) or semantic (class palette).", choices=MESH_COLOR_CHOICES)
    voxel_map_rate: float = parameter(
        0.5, "voxel_map publications per second; 0 disables.", 0.0, 100.0)
    voxel_map_distance: float = parameter(
        1.0, "voxel_map holds the observed voxels whose fused distance to the surface is at most this many "
             "voxel sizes and, with a completion network, the voxels it adds within this distance of its surface "
             "(observed = 0, with their surface_confidence).", 0.0, 16.0)
    status_period: float = parameter(
        5.0, "Seconds between status log lines (also published as JSON on ~/status); 0 disables.", 0.0, 3600.0)
    initial_map: str = parameter(
        "", "A map folder written by ~/save_map (or its volume.pt) to start from, every layer restored (predictions "
            "too); mapping continues on top of it. Empty starts with an empty map (~ expanded).")
    output_dir: str = parameter(
        "~/.ros/semantic_recon_ros", "Folder where ~/save_map and the shutdown save write the map, each save "
                                     "one consistent set: a new folder maps/NNNNNN that the link current then "
                                     "names; mesh_rgb.ply, mesh_semantic.ply and volume.pt link into current "
                                     "(created; ~ expanded).")
    segmenter: str = parameter(
        "default", "2D segmenter whose class probabilities label the map, run on keyframes in the background: "
                   "\"default\" = the installed DeepLabV3-MobileNetV2 ADE20K model, a model file or folder "
                   "(.tflite, .onnx, .pt/.ts, .pt2 with its segmenter.yaml), or empty = none. One that cannot be "
                   "loaded is logged as an error and the node maps without it. With rgb_only_geometry atlas: the "
                   "segmenter of an Atlas checkpoint with 'deeplab' features, run on every back-projected frame "
                   "(else unused).")
    segmentation_rate: float = parameter(
        1.0, "Most keyframe segmentations per second (a keyframe: the newest integrated frame once the camera "
             "moved 5 cm or turned 5 degrees since the last one); a slow segmenter lowers this rate, never the "
             "integration rate.", 0.01, 100.0)
    save_on_shutdown: bool = parameter(
        False, "Save the map into output_dir when the node shuts down (after the pending frames are fused).")
    torch_threads: int = parameter(
        1, "CPU threads of torch's intra-op pool (0 = torch's default, one per core). With other busy threads and "
           "processes on the cores, one thread integrates fastest.", 0, 1024)

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.world_frame:
            raise ValueError("MappingNodeConfig.world_frame must not be empty")

    @property
    def atlas(self) -> bool:
        """RGB-only mapping by the Atlas network (the map holds image features, not depth)."""
        return self.rgb_only and self.rgb_only_geometry == "atlas"

    @property
    def stereo(self) -> bool:
        """RGB-only mapping of depth estimated by stereo (the map is built like an RGB-D map)."""
        return self.rgb_only and self.rgb_only_geometry == "stereo"


# (ROS parameter prefix, config dataclass): "" = top-level parameters. The one parameter table of the node.
SECTIONS: tuple[tuple[str, type], ...] = (
    ("", MappingNodeConfig),
    ("", MapperConfig),
    ("volume", VolumeConfig),
    ("completion", CompletionConfig),
    ("single_view", LiveSingleViewConfig),
    ("stereo", StereoConfig),
)


def parameter_name(section: str, name: str) -> str:
    """Full ROS parameter name of field ``name`` of ``section`` (``volume.voxel_size``, ``world_frame``)."""
    return f"{section}.{name}" if section else name
