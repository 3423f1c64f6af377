"""results.md and results.json of an RGB-only evaluation (:mod:`.rgb_only_evaluation`): one table per dataset, rows
the RGB-D map, the RGB-only map (Atlas or stereo) and the trivial baseline, columns Atlas' 2D depth and 3D metrics
and the semantic scores."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from .evaluation_protocol import EvaluationProtocol
from .evaluation_report import DatasetResult, protocol_summary, write_report

# the semantic transfer onto the reference surface is kept in the "full" confusion (see evaluation_scoring)
HEADINGS = {"mIoU p2f": "mIoU 3D", "mAcc p2f": "mAcc 3D"}
PER_CLASS_TABLES = (("full", "Per-class IoU at the reference surface (3D, labels transferred from each mesh)"),
                    ("views", "Per-class IoU of the rendered labels in the held-out views (2D)"))

DEFINITIONS = """\
Definitions. Every method maps the same input frames, a seeded {fraction:.0%} of each scene's frames (7-Scenes: only
frames {first}-{last}, which no checkpoint may train on). "RGB-D map": TSDF fusion of their depth, color and 2D labels
(what RGB-D mapping gives), the upper reference. "RGB-only": their color and camera poses only, mapped by {method}.
"constant depth": a trivial baseline that needs no training: every pixel of every input frame at the median captured
depth of the input frames (it knows the scene's scale, nothing else), TSDF-fused. The reference is the TSDF fusion of
the captured depth of ALL the scene's frames, meshed. 3D (Atlas): points sampled every {spacing:g} cm on each method's
mesh and on the reference mesh; Acc / Comp = mean distance prediction -> reference / reference -> prediction, Prec /
Recall / F-score at {threshold:g} cm; averaged over scenes. mIoU 3D / mAcc 3D (synthetic rooms): Atlas' semantic
transfer, every reference point takes the label of the method's nearest mesh vertex, scored against the class of the
ground-truth box nearest to the point; over the classes present, micro-summed over scenes. 2D depth (Atlas): each mesh
rendered into the held-out views (frames no method mapped) against their captured depth, pixels with a prediction and 0
< depth < 10 m; Compl 2D = fraction of pixels with a prediction; averaged over views. mIoU 2D / mAcc 2D: the mesh labels
rendered into the held-out views against the views' 2D labels (synthetic: ground truth; 7-Scenes: the DeepLab segmenter,
i.e. semantic consistency).
"""


def write_rgb_only_results(out_dir: Path, datasets: Sequence[DatasetResult], class_names: Sequence[str],
                           protocol: EvaluationProtocol, method: str, method_settings: dict,
                           ground_truth_labels: bool, command: str, seconds: float) -> tuple[Path, Path]:
    """Write ``results.md`` and ``results.json`` of an RGB-only evaluation; returns their paths.

    Args:
        method: what the RGB-only row is, one line (an Atlas checkpoint, or stereo and its settings).
        method_settings: its settings for results.json.
        ground_truth_labels: the RGB-D map fused the synthetic frames' 2D ground truth, not the segmenter's.
    """
    labels = ("the synthetic frames' ground truth" if ground_truth_labels
              else f"the 2D segmenter (min probability {protocol.min_label_probability:g})")
    header = [f"# RGB-only evaluation: {method}", "", f"Command: `{command}`", "",
              f"Protocol: {protocol_summary(protocol)}; 2D labels of the RGB-D map from {labels}. Wall time "
              f"{seconds / 60:.1f} min.", ""]
    document = {"rgb_only": method, "command": command, "seconds": round(seconds, 1),
                "protocol": dataclasses.asdict(protocol), "settings": method_settings}
    first, last = protocol.held_out_range
    definitions = DEFINITIONS.format(fraction=protocol.input_fraction, first=first, last=last - 1,
                                     method=method, spacing=protocol.mesh_sample_spacing * 100,
                                     threshold=protocol.fscore_threshold * 100)
    return write_report(out_dir, header, document, datasets, class_names, PER_CLASS_TABLES, definitions, HEADINGS)
