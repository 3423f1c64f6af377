"""Map a posed RGB-D sequence into a colored, semantic mesh and a saved volume.

Reads a 7-Scenes, TUM RGB-D or ScanNet-style folder (synthetic scenes use the ScanNet layout), a ROS 2 bag or a
ROS 1 .bag file (color, depth, camera_info and /tf, as written by `semantic-recon make-bag`; read directly, no
DDS), fuses every frame into the sparse TSDF volume (fusing 2D labels when the dataset has them) and writes to
the output folder: mesh_rgb.ply, mesh_semantic.ply (both keep the class label per vertex),
volume.pt (every layer; reload with semantic_recon_ros.core.map.load_volume) -- one consistent set, saved
like the node's maps (links into the folder's current save, :mod:`semantic_recon_ros.core.map_folder`) --,
preview.png (the mesh seen from above, along the normal of the map's floor and table tops) and summary.json.
The completion network (by default the installed models/default.pt; --checkpoint FILE for another,
--checkpoint '' for none) then predicts the whole mapped region. The map stays the observed surface
(mesh_rgb.ply, mesh_semantic.ply, the preview), its labels combining the fused 2D labels and the network's
classes; mesh_additions.ply holds the surface the network adds where nothing was observed, only where its
calibrated confidence reaches completion.min_confidence, with that confidence per vertex
(``surface_confidence``); volume.pt keeps the predictions of every block of the map with their confidence.
When the default model does not fit the volume settings (e.g. another --voxel-size), the map is made by fusion
only, with a warning; a checkpoint given explicitly must fit.

``--rgb-only`` maps from color and camera poses alone (the frames' depth is not used), as the node's rgb_only mode
does, by the geometry of --rgb-only-geometry (default: the parameter file's rgb_only_geometry):

* ``stereo``: each selected frame's depth is estimated from the earlier selected frames by plane-sweep stereo (the
  parameter file's ``stereo`` section) and the frame is mapped as above (labels, completion network). Frames before
  the camera has moved far enough get no depth (``frames_without_stereo_source`` in summary.json). A dataset whose
  color camera is not the camera of its intrinsics (7-Scenes: 525 px, its files carry the depth camera's 585) needs
  --color-focal.
* ``atlas``: every selected frame's image features (those of the Atlas checkpoint, by default the installed
  models/atlas_default.pt; a 'deeplab' checkpoint uses --segmenter) are back-projected along the camera rays up to
  rgb_only_max_range (the parameter file's, or --max-range), then the Atlas network reconstructs the map from them.
  The same files come out; the meshes and the preview show the network's reconstruction (no mesh_additions.ply).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ..core.classes import load_class_set
from ..core.completion import DEFAULT_CHECKPOINT
from ..core.config import CompletionConfig, StereoConfig, VolumeConfig, load_section
from ..core.datasets import FORMATS, detect_format, open_sequence
from ..core.datasets.rosbag_sequence import RosbagTopics
from ..core.device import resolve_device
from ..core.mapper import MapFrame, Mapper
from ..core.mesh_preview import camera_view, preview_picture
from ..core.multi_view_stereo import PlaneSweepStereo
from ..core.resources import share_file
from ..core.segmentation import DEFAULT_SEGMENTER, confidence_weighted, load_segmenter
from ..ros.node_config import MappingNodeConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sequence", type=Path, nargs="?",
                        help="dataset folder, ROS 2 bag (folder, or a .mcap / .db3 file) or ROS 1 .bag file")
    parser.add_argument("--bag", type=Path, default=None,
                        help="a ROS 2 or ROS 1 bag (the same as giving it as the sequence; read directly, no DDS)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="dataset layout")
    bag_topics = parser.add_argument_group(
        "bag topics", "Raw or compressed (<topic>/compressed, <topic>/compressedDepth) images are read. A topic not "
                      "given and absent from the bag is found by message type when exactly one topic fits.")
    for kind, default in (("color", RosbagTopics.color), ("depth", RosbagTopics.depth),
                          ("camera-info", RosbagTopics.camera_info)):
        bag_topics.add_argument(f"--{kind}-topic", default=None, metavar="TOPIC",
                                help=f"{kind.replace('-', '_')} topic of the bag (default {default})")
    parser.add_argument("--params-file", type=Path, action="append", default=None,
                        help="parameter YAML with 'volume' and 'completion' sections (default: the installed "
                             "config/mapping.yaml); repeat it to layer files (later ones override single keys, "
                             "e.g. --params-file config/mapping.yaml --params-file config/cameras/realsense_d435.yaml)")
    parser.add_argument("--voxel-size", type=float, default=None, help="voxel size in metres (overrides the file)")
    parser.add_argument("--max-depth", type=float, default=None, help="ignore depth beyond this, metres")
    parser.add_argument("--stride", type=int, default=1, help="use every n-th frame")
    parser.add_argument("--start", type=int, default=0, help="first frame")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--labels", choices=["auto", "none", "segmenter"], default="auto",
                        help="auto: fuse the dataset's 2D labels when it has them; segmenter: fuse the class "
                             "probabilities of the 2D segmenter (--segmenter), weighed by a depth-based confidence")
    parser.add_argument("--segmenter", default=DEFAULT_SEGMENTER,
                        help=f"2D segmenter for --labels segmenter: {DEFAULT_SEGMENTER!r} (the default: the installed "
                             "DeepLabV3/ADE20K TFLite model), a model folder with segmenter.yaml, or a model file "
                             "(.tflite, .onnx, .pt/.ts TorchScript, .pt2 torch.export)")
    parser.add_argument("--classes", type=Path, default=None, help="class list YAML (default config/classes.yaml)")
    parser.add_argument("--checkpoint", default=None,
                        help=f"completion network checkpoint (S4R) file; {DEFAULT_CHECKPOINT!r} (the default) for the "
                             "installed default model, '' for none (fusion only); completes the map after fusion. "
                             "With --rgb-only atlas geometry the Atlas checkpoint (default: the installed "
                             "models/atlas_default.pt)")
    parser.add_argument("--rgb-only", action="store_true",
                        help="map from color and poses alone (no depth), by --rgb-only-geometry")
    parser.add_argument("--rgb-only-geometry", choices=["stereo", "atlas"], default=None,
                        help="--rgb-only: stereo = depth estimated from earlier frames, then mapped like RGB-D; "
                             "atlas = the Atlas network reconstructs the map from back-projected image features (a "
                             "'deeplab' checkpoint uses --segmenter). Default: rgb_only_geometry of the parameter file")
    parser.add_argument("--color-focal", type=float, default=None,
                        help="--rgb-only stereo: focal length (pixels) of the color camera when the sequence's "
                             "intrinsics are another camera's (7-Scenes: 525)")
    parser.add_argument("--max-range", type=float, default=None,
                        help="--rgb-only atlas: features fill each camera ray up to this distance in metres (default: "
                             "rgb_only_max_range of the parameter file)")
    parser.add_argument("--device", default="auto", help="torch device: auto (cuda if available), cpu, cuda, cuda:1")


def bag_options(args: argparse.Namespace) -> dict:
    """RosbagSequence options of the topic arguments (none for other formats, which must not be given topics)."""
    given = {kind: topic for kind in ("color", "depth", "camera_info")
             if (topic := getattr(args, f"{kind}_topic")) is not None}
    if (args.format if args.format != "auto" else detect_format(args.sequence)) != "rosbag":
        if given:
            raise ValueError(f"--{next(iter(given)).replace('_', '-')}-topic applies to bags only")
        return {}
    return {"topics": RosbagTopics(**given), "fixed_topics": sorted(given)}


def run(args: argparse.Namespace) -> int:
    if (args.sequence is None) == (args.bag is None):
        raise ValueError("give either a SEQUENCE folder or --bag BAG, not both or neither")
    if args.bag is not None:
        args.sequence = args.bag
    if args.stride < 1:
        raise ValueError("--stride must be at least 1")
    params_files = args.params_file or [share_file("config/mapping.yaml")]
    config = load_section(params_files, "volume", VolumeConfig, voxel_size=args.voxel_size, max_depth=args.max_depth)
    node_config = load_section(params_files, "", MappingNodeConfig, rgb_only_max_range=args.max_range,
                               rgb_only_geometry=args.rgb_only_geometry)
    atlas = args.rgb_only and node_config.rgb_only_geometry == "atlas"
    stereo = (PlaneSweepStereo(load_section(params_files, "stereo", StereoConfig))
              if args.rgb_only and not atlas else None)
    misplaced = {"--rgb-only-geometry": (args.rgb_only_geometry, args.rgb_only, "--rgb-only"),
                 "--max-range": (args.max_range, atlas, "--rgb-only with atlas geometry"),
                 "--color-focal": (args.color_focal, stereo is not None, "--rgb-only with stereo geometry")}
    for option, (given, applies, where) in misplaced.items():
        if given is not None and not applies:
            raise ValueError(f"{option} applies to {where}")
    if atlas and args.labels == "segmenter":
        raise ValueError("--labels segmenter applies to maps with depth (RGB-D, or --rgb-only stereo): with atlas "
                         "geometry the Atlas network labels the map")
    max_range = node_config.rgb_only_max_range if atlas else None
    classes = load_class_set(args.classes)
    device = resolve_device(args.device)
    whole = open_sequence(args.sequence, args.format, **bag_options(args))
    if getattr(whole, "damage", None):  # a bag read up to the point where it is damaged
        print(f"warning: {whole.damage}", file=sys.stderr)
    sequence = whole.subset(start=args.start, stride=args.stride, max_frames=args.max_frames)
    if len(sequence) == 0:
        raise ValueError(f"{args.sequence}: no frames selected")
    segmenter = None
    if args.labels == "segmenter":
        segmenter = load_segmenter(args.segmenter, classes.names, device)
        if segmenter is None:
            raise ValueError("--labels segmenter needs a segmenter (--segmenter default, a folder or a model file)")
    # the network is loaded before fusing, so a checkpoint that does not fit fails at once; the default model
    # may not fit the map's settings (then fusion only, with a warning), a checkpoint asked for must (and RGB-only
    # mapping needs its network whatever it is)
    mapper = Mapper(config, classes, device, load_section(params_files, "completion", CompletionConfig),
                    checkpoint=DEFAULT_CHECKPOINT if args.checkpoint is None else args.checkpoint,
                    mesh_source="observed", strict_checkpoint=args.checkpoint is not None, rgb_only_max_range=max_range,
                    segmenter_factory=lambda: load_segmenter(args.segmenter, classes.names, device))
    if mapper.completion_error is not None:
        print(f"warning: the default completion model does not fit this map, mapping by fusion only "
              f"(--checkpoint '' silences this): {mapper.completion_error}", file=sys.stderr)
    poses, skipped, labeled, without_source = [], [], 0, 0
    progress = tqdm(range(len(sequence)), desc=f"mapping {sequence.name}", unit="frame")
    for i in progress:
        try:
            frame = sequence[i]
        except (ValueError, FileNotFoundError) as err:
            skipped.append(str(err))
            tqdm.write(f"skipping frame {i}: {err}")
            continue
        if stereo is not None:
            camera = frame.camera if args.color_focal is None else frame.camera.with_focal_length(args.color_focal)
            depth = stereo.estimate(frame.color, camera, frame.T_world_cam)
            if depth is None:
                without_source += 1
                continue
            frame = dataclasses.replace(frame, camera=camera, depth=depth)
        if atlas:
            mapper.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color))
        else:
            labels = frame.labels if args.labels == "auto" else None
            probs = None
            if segmenter is not None:  # weighed by depth as the node's keyframes are: weaker near edges and far away
                probs = confidence_weighted(segmenter.predict(frame.color), frame.depth, frame.camera)
            labeled += labels is not None or probs is not None
            mapper.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth, labels, probs))
        poses.append(frame.T_world_cam)
        progress.set_postfix(blocks=mapper.volume.num_blocks, ms=mapper.stats.mean_integrate_ms())
    if not poses:
        raise ValueError(f"{args.sequence}: no frame could be read ({skipped[0]})" if skipped else
                         f"{args.sequence}: no frame got stereo depth (the camera never moved "
                         f"stereo.min_baseline)")
    integrate_ms = mapper.stats.mean_integrate_ms()

    completion = None
    if mapper.engine is not None:
        with tqdm(desc="reconstructing" if atlas else "completing", unit="chunk") as bar:
            def advance(done: int, planned: int) -> None:
                bar.total = planned
                bar.update(done - bar.n)

            completion = mapper.complete(time_budget=float("inf"), progress=advance)
    out = args.out
    start = time.perf_counter()
    saved = mapper.save(out)
    save_seconds = time.perf_counter() - start
    mesh = saved.mesh
    view = camera_view(poses, mesh)  # straight down the observed floor's and tables' normal, i.e. along gravity
    up = view.up
    pictured = f"observed mesh of {mesh.num_triangles} triangles"
    if atlas:
        pictured = f"RGB-only reconstruction by {mapper.checkpoint.name}: {mesh.num_triangles} triangles"
    elif stereo is not None:
        pictured = f"RGB-only map of stereo depth: {mesh.num_triangles} triangles"
    if saved.additions is not None:
        pictured += f" ({saved.additions.num_triangles} more added by {mapper.checkpoint.name}: mesh_additions.ply)"
    title = f"{sequence.name}: {len(poses)} frames, {config.voxel_size * 100:g} cm voxels, {pictured}"
    preview_picture(mesh, classes, view, title).save(out / "preview.png")
    summary = {
        "sequence": str(args.sequence), "frames_integrated": len(poses), "frames_skipped": len(skipped),
        "frames_with_labels": labeled, "device": str(device), "voxel_size": config.voxel_size,
        "blocks": mapper.volume.num_blocks, "volume_megabytes": round(mapper.volume.memory_bytes() / 1e6, 1),
        "integrate_ms_per_frame": integrate_ms, "save_ms": round(1000 * save_seconds, 1),
        "vertices": mesh.num_vertices, "triangles": mesh.num_triangles,
        "labeled_vertex_fraction": round(float((mesh.labels >= 0).mean()) if mesh.num_vertices else 0.0, 4),
        "preview_title": title, "preview_up": [round(float(c), 5) for c in up],
    }
    if completion is not None:
        summary.update(checkpoint=str(mapper.checkpoint), completion_seconds=round(completion.seconds, 2),
                       completion_chunks=completion.chunks_run)
    if saved.additions is not None:
        summary.update(additions_triangles=saved.additions.num_triangles)
    if atlas:
        summary.update(rgb_only_geometry="atlas", rgb_only_max_range=max_range,
                       feature_source=mapper.feature_extractor.source)
    elif stereo is not None:
        summary.update(rgb_only_geometry="stereo", frames_without_stereo_source=without_source)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0
