"""Write a posed RGB-D sequence (7-Scenes, TUM, ScanNet-style folder) into a ROS 2 bag.

The bag holds color (rgb8), depth (32FC1 metres or 16UC1 millimetres) -- or, with --compressed, color as
CompressedImage (png or jpeg) on .../image_raw/compressed and depth as image_transport's compressedDepth on
.../image_raw/compressedDepth --, camera_info, semantic labels when the frames have them, /tf (world ->
camera_link per frame) and /tf_static (camera_link -> camera_color_optical_frame); see semantic_recon_ros.core.datasets.rosbag_writer. No ROS install needed.
"""

from __future__ import annotations

import argparse

from tqdm import tqdm

from ..core.compressed_image_codec import COLOR_COMPRESSIONS
from ..core.datasets import open_sequence
from ..core.datasets.rosbag_sequence import RosbagTopics
from ..core.datasets.rosbag_writer import STORAGES, RosbagFrames, RosbagWriter, RosbagWriterConfig
from ..core.transform_tree import NANOSECONDS_PER_SECOND

_DEFAULTS = RosbagWriterConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sequence", help="sequence folder (format detected from its layout)")
    parser.add_argument("out", help="bag folder to create (must not exist)")
    parser.add_argument("--storage", choices=sorted(STORAGES), default=_DEFAULTS.storage, help="bag storage plugin")
    parser.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default=_DEFAULTS.depth_encoding,
                        help="32FC1 metres (exact) or 16UC1 millimetres (rounded)")
    parser.add_argument("--compressed", nargs="?", const="png", default=None, choices=COLOR_COMPRESSIONS,
                        metavar="{png,jpeg}",
                        help="write compressed images as image_transport does: color as CompressedImage (png: "
                             "lossless, the default; jpeg: lossy) and depth as compressedDepth png in --depth-encoding")
    parser.add_argument("--stride", type=int, default=1, help="use every N-th frame")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--frame-rate", type=float, default=_DEFAULTS.frame_rate,
                        help="stamp frames at this fixed rate in Hz (default %(default)s)")
    timing.add_argument("--use-timestamps", action="store_true",
                        help="stamp frames from their own timestamps instead of a fixed rate")
    parser.add_argument("--start-time", type=float, default=_DEFAULTS.start_time_ns / NANOSECONDS_PER_SECOND,
                        help="ROS time of the first frame, seconds (default %(default)s)")
    parser.add_argument("--world-frame", default=RosbagFrames.world, help="TF parent of the camera pose")
    parser.add_argument("--camera-link-frame", default=RosbagFrames.camera_link, help="camera body frame")
    parser.add_argument("--optical-frame", default=RosbagFrames.optical, help="camera optical frame (image headers)")


def run(args: argparse.Namespace) -> int:
    sequence = open_sequence(args.sequence).subset(stride=args.stride, max_frames=args.max_frames)
    config = RosbagWriterConfig(
        storage=args.storage,
        depth_encoding=args.depth_encoding,
        compression=args.compressed,
        frame_rate=None if args.use_timestamps else args.frame_rate,
        start_time_ns=round(args.start_time * NANOSECONDS_PER_SECOND),
        topics=RosbagTopics(),
        frames=RosbagFrames(world=args.world_frame, camera_link=args.camera_link_frame, optical=args.optical_frame),
    )
    with RosbagWriter(args.out, config) as writer:
        for frame in tqdm(sequence, desc=f"writing {args.out}", unit="frame"):
            writer.write(frame)
    compressed = f", {args.compressed} / compressedDepth" if args.compressed else ""
    print(f"wrote {writer.frames_written} frames of {sequence.name} to {args.out} ({args.storage}{compressed})")
    return 0
