"""Benchmark: RGB-only mapping by plane-sweep stereo on real 7-Scenes frames, next to RGB-D fusion of the same frames.

Every ``--stride``-th frame of ``--frames`` gets its depth from earlier frames (``PlaneSweepStereo`` at the node's
``stereo.*`` defaults, color and poses only) and is TSDF-fused at 4 cm; the mesh is scored with Atlas' 3D metrics at
5 cm against the fusion of the captured depth of ALL frames in the range. The RGB-D row fuses the captured depth of
the same strided frames (the upper reference). 7-Scenes' color camera is not the depth camera whose intrinsics the
sequence carries (fx = fy = 585): ``--color-focal`` sets the color focal length in pixels (several values: one row
each); ``--variants`` compares settings (each a comma-separated list of ``stereo.*`` overrides, ``default`` for
none). Frames 500-599 are the held-out range of the evaluation; choose settings on other frames.

    .venv/bin/python bench/bench_stereo.py [--frames 500:600] [--stride 3] [--color-focal 525] \
        [--variants default min_consistent=0] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from semantic_recon_ros.core.config import StereoConfig
from semantic_recon_ros.core.datasets.seven_scenes import COLOR_FOCAL_LENGTH, SevenScenesSequence
from semantic_recon_ros.core.mapper import MapFrame, Mapper
from semantic_recon_ros.core.multi_view_stereo import PlaneSweepStereo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # semantic_recon_training (not installed) lives beside the package
from semantic_recon_training.evaluation.evaluation_protocol import EvaluationProtocol  # noqa: E402
from semantic_recon_training.evaluation.evaluation_scoring import mesh_points  # noqa: E402
from semantic_recon_training.evaluation.metrics import mesh_metrics  # noqa: E402

SEVEN_SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"
COLUMNS = ("Acc", "Comp", "Prec", "Recall", "F-score")


def frame_range(text: str) -> range:
    first, last = (int(part) for part in text.split(":"))
    return range(first, last)


def stereo_config(variant: str) -> StereoConfig:
    """``default`` or ``name=value,name=value`` (fields of StereoConfig) -> the config."""
    if variant == "default":
        return StereoConfig()
    defaults = StereoConfig()
    changes = dict(item.split("=", 1) for item in variant.split(","))
    return StereoConfig(**{name: type(getattr(defaults, name))(value) for name, value in changes.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequence", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--frames", type=frame_range, default=range(500, 600), help="first:last (last excluded)")
    parser.add_argument("--stride", type=int, default=3)
    parser.add_argument("--color-focal", type=float, nargs="+", default=[COLOR_FOCAL_LENGTH])
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sequence = SevenScenesSequence(args.sequence)
    frames = [sequence[index] for index in tqdm(args.frames, desc="loading", unit="frame")]
    protocol = EvaluationProtocol()
    target = Mapper(protocol.volume_config(), ["surface"])
    for frame in frames:
        target.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth))
    target_points = mesh_points(target.mesh()[0], protocol.mesh_sample_spacing, protocol.max_mesh_samples)
    strided = frames[::args.stride]
    rows = []
    rgbd = Mapper(protocol.volume_config(), ["surface"])
    for frame in strided:
        rgbd.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth))
    rows.append(("RGB-D fusion of the same frames (reference)", float("nan"), len(strided),
                 mesh_metrics(mesh_points(rgbd.mesh()[0], protocol.mesh_sample_spacing, protocol.max_mesh_samples),
                              target_points, protocol.fscore_threshold)))
    for focal, variant in ((focal, variant) for focal in args.color_focal for variant in args.variants):
        camera = sequence.camera.with_focal_length(focal)
        stereo, mapper = PlaneSweepStereo(stereo_config(variant)), Mapper(protocol.volume_config(), ["surface"])
        seconds, mapped = 0.0, 0
        for frame in tqdm(strided, desc=f"stereo {variant}, focal {focal:g}", unit="frame"):
            start = time.perf_counter()
            depth = stereo.estimate(frame.color, camera, frame.T_world_cam)
            seconds += time.perf_counter() - start
            if depth is not None:
                mapper.integrate(MapFrame(camera, frame.T_world_cam, frame.color, depth))
                mapped += 1
        points = mesh_points(mapper.mesh()[0], protocol.mesh_sample_spacing, protocol.max_mesh_samples)
        rows.append((f"RGB-only stereo {variant}, color focal {focal:g} px", seconds / len(strided), mapped,
                     mesh_metrics(points, target_points, protocol.fscore_threshold)))
    print(f"\n{args.sequence.name} frames {args.frames.start}-{args.frames.stop - 1}, every {args.stride}: "
          f"{len(strided)} frames mapped, target = fusion of all {len(frames)} depth frames; "
          f"{protocol.voxel_size * 100:g} cm voxels, F-score at {protocol.fscore_threshold * 100:g} cm\n")
    print("| method | s per frame | frames with depth | " + " | ".join(COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for name, seconds, mapped, scores in rows:
        print(f"| {name} | {seconds:.2f} | {mapped} | " + " | ".join(f"{scores[c]:.3f}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
