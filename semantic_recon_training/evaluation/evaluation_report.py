"""results.md and results.json of an evaluation: one table per dataset (rows methods, columns metrics) and per-class
IoU tables."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from semantic_recon_ros.core.completion_confidence import ConfidenceCalibration
from semantic_recon_ros.core.config.completion import CompletionConfig

from .evaluation_protocol import EvaluationProtocol
from .evaluation_scoring import MethodScores
from .scene_evaluation import SceneResult

# summary key -> (column heading, better direction, kind: "fraction" or "metres")
COLUMNS = {
    "IoU": ("IoU", "↑", "fraction"),
    "Recall": ("Recall", "↑", "fraction"),
    "Precision": ("Prec", "↑", "fraction"),
    "L1": ("L1 m", "↓", "metres"),
    "mIoU p2p": ("mIoU p2p", "↑", "fraction"),
    "mAcc p2p": ("mAcc p2p", "↑", "fraction"),
    "mIoU p2f": ("mIoU p2f", "↑", "fraction"),
    "mAcc p2f": ("mAcc p2f", "↑", "fraction"),
    "mIoU 2D": ("mIoU 2D", "↑", "fraction"),
    "mAcc 2D": ("mAcc 2D", "↑", "fraction"),
    "AbsRel": ("AbsRel", "↓", "fraction"),
    "AbsDiff": ("AbsDiff m", "↓", "metres"),
    "SqRel": ("SqRel", "↓", "fraction"),
    "RMSE": ("RMSE m", "↓", "metres"),
    "delta<1.25": ("δ<1.25", "↑", "fraction"),
    "delta<1.25^2": ("δ<1.25²", "↑", "fraction"),
    "delta<1.25^3": ("δ<1.25³", "↑", "fraction"),
    "complete": ("Compl 2D", "↑", "fraction"),
    "3D Acc": ("Acc m", "↓", "metres"),
    "3D Comp": ("Comp m", "↓", "metres"),
    "3D Prec": ("Prec 3D", "↑", "fraction"),
    "3D Recall": ("Recall 3D", "↑", "fraction"),
    "3D F-score": ("F-score", "↑", "fraction"),
}


@dataclass
class DatasetResult:
    """All scenes of one dataset (``synthetic``: with 3D ground truth) and the methods' scores summed over them."""

    title: str
    scenes: list[SceneResult]
    synthetic: bool
    totals: dict[str, MethodScores] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for scene in self.scenes:
            for name, scores in scene.methods.items():
                if name not in self.totals:
                    self.totals[name] = MethodScores(scores.num_classes, scores.has_semantics)
                self.totals[name].merge(scores)


def format_value(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:.3f}"


def metrics_table(summaries: dict[str, dict[str, float]], headings: dict[str, str] | None = None) -> str:
    """Markdown table, rows = methods; columns where every method is NaN are left out. ``headings``: summary key ->
    column heading, replacing those of :data:`COLUMNS`."""
    headings = {k: heading for k, (heading, _, _) in COLUMNS.items()} | (headings or {})
    keys = [k for k in COLUMNS if any(not math.isnan(s.get(k, math.nan)) for s in summaries.values())]
    header = "| method | " + " | ".join(f"{headings[k]} {COLUMNS[k][1]}" for k in keys) + " |"
    rule = "|---|" + "---:|" * len(keys)
    rows = [f"| {name} | " + " | ".join(format_value(summary.get(k, math.nan)) for k in keys) + " |"
            for name, summary in summaries.items()]
    return "\n".join([header, rule, *rows])


def per_class_table(totals: dict[str, MethodScores], class_names: Sequence[str], which: str) -> str:
    """Markdown table of per-class IoU (rows = semantic methods, columns = classes present in the target) of the
    confusion ``which`` ("partial", "full" or "views"); empty when nothing was scored."""
    semantic = {name: getattr(s, which) for name, s in totals.items() if s.has_semantics}
    if not semantic:
        return ""
    support = next(iter(semantic.values())).support()
    if int(support.sum()) == 0:
        return ""
    present = [k for k in range(len(class_names)) if support[k] > 0]
    header = "| method | " + " | ".join(class_names[k] for k in present) + " |"
    rule = "|---|" + "---:|" * len(present)
    rows = []
    for name, confusion in semantic.items():
        iou = confusion.per_class_iou()
        rows.append(f"| {name} | " + " | ".join(format_value(float(iou[k])) for k in present) + " |")
    share = [f"{class_names[k]} {int(support[k])}" for k in present]
    return "\n".join([header, rule, *rows, "", f"Target support (voxels or pixels): {', '.join(share)}."])


DEFINITIONS = """\
Definitions. Occupied voxel: {occupancy}; completion IoU, recall and
precision count occupied voxels where the target is known (synthetic: everywhere except surfaces no camera can see,
i.e. the outer faces of the room's slabs and planes where boxes touch; 7-Scenes: voxels observed by the fusion of
all frames). L1: Atlas' TSDF L1 in metres over known voxels with |target tsdf| < 1 (a method's unknown voxels count
as free, tsdf 1). Semantics (synthetic only, 3D labels): mIoU / mAcc over the classes present, micro-summed over
scenes, partial-to-partial (p2p: surface voxels observed in the input scan) and partial-to-full (p2f: every visible
ground-truth surface voxel); a voxel the method leaves unlabeled counts as wrong. mIoU 2D / mAcc 2D: each method's
mesh labels rendered into the held-out views against the views' 2D labels (synthetic: ground truth; 7-Scenes: the
DeepLab segmenter, i.e. semantic consistency). 2D depth (Atlas): each method's mesh rendered into the held-out views
(frames not fused into the input), pixels with a prediction and 0 < target < 10 m; Compl 2D = fraction of pixels
with a prediction; averaged over views. 3D (Atlas): points sampled every {spacing:g} cm on the method's mesh and on the
target mesh (synthetic: ground truth; 7-Scenes: the fusion of all frames); Acc / Comp = mean distance prediction -> target /
target -> prediction, Prec / Recall / F-score at {threshold:g} cm; averaged over scenes. "TSDF fusion" and "2D label fusion" share
their geometry (the same fusion of the input frames); "network" is the network's prediction alone, unfiltered;
"fusion + network labels" is the map by default (the observed geometry, labels combining the fused votes and the
network's classes); "fusion + network" keeps observed voxels and adds the network's prediction where its calibrated
confidence reaches completion.min_confidence (the map with its additions). "ablation:" rows change one setting of
the latter two each."""


PER_CLASS_TABLES = (("full", "Per-class IoU, partial-to-full (3D)"),
                    ("partial", "Per-class IoU, partial-to-partial (3D)"),
                    ("views", "Per-class IoU of the rendered labels in the held-out views (2D)"))


def protocol_summary(protocol: EvaluationProtocol) -> str:
    """The protocol's voxels, input frames and held-out views, as the reports' "Protocol:" line states them."""
    return (f"{protocol.voxel_size * 100:g} cm voxels, truncation {protocol.truncation_voxels:g} voxels, "
            f"input = a seeded {protocol.input_fraction:.0%} of the frames (seed {protocol.seed}), "
            f"up to {protocol.views_per_scene} held-out views per scene at 1/{protocol.view_downscale} resolution")


def write_results(out_dir: Path, datasets: Sequence[DatasetResult], class_names: Sequence[str],
                  protocol: EvaluationProtocol, completion: CompletionConfig, checkpoint: Path, command: str,
                  seconds: float, calibration: ConfidenceCalibration) -> tuple[Path, Path]:
    """Write ``results.md`` and ``results.json`` of a completion checkpoint's evaluation; returns their paths."""
    lines = [f"# Evaluation of `{checkpoint}`", "", f"Command: `{command}`", "",
             f"Protocol: {protocol_summary(protocol)}, pseudo-labels from the 2D segmenter (min probability {protocol.min_label_probability:g}). "
             f"Completion: min_confidence {completion.min_confidence:g}, label_override_probability "
             f"{completion.label_override_probability:g}; confidence calibration: {calibration.fitted_on}. "
             f"Wall time {seconds / 60:.1f} min.", ""]
    document = {"checkpoint": str(checkpoint), "command": command, "seconds": round(seconds, 1),
                "protocol": dataclasses.asdict(protocol), "completion": dataclasses.asdict(completion),
                "calibration": calibration.to_dict()}
    occupancy = ("on the surface shell, |sdf| < 1 voxel (S4R / SG-NN)" if protocol.occupancy == "surface"
                 else "in the band behind the surface, -truncation < sdf <= 0")
    definitions = DEFINITIONS.format(occupancy=occupancy, spacing=protocol.mesh_sample_spacing * 100,
                                     threshold=protocol.fscore_threshold * 100)
    return write_report(out_dir, lines, document, datasets, class_names, PER_CLASS_TABLES, definitions)


def write_report(out_dir: Path, header: list[str], document: dict, datasets: Sequence[DatasetResult],
                 class_names: Sequence[str], per_class_tables: Sequence[tuple[str, str]], definitions: str,
                 headings: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Write ``results.md`` (``header`` lines, per dataset its metrics table (``headings`` as in
    :func:`metrics_table`) and the per-class IoU tables ``per_class_tables`` ((confusion, title) pairs) where
    something was scored, then ``definitions``) and ``results.json`` (``document`` plus the class names and every
    dataset's scores); returns their paths."""
    lines = list(header)
    document = {**document, "class_names": list(class_names), "datasets": {}}
    for dataset in datasets:
        summaries = {name: scores.summary() for name, scores in dataset.totals.items()}
        lines += [f"## {dataset.title}", "", f"Scenes: {', '.join(s.name for s in dataset.scenes)}.", "",
                  metrics_table(summaries, headings), ""]
        for which, title in per_class_tables:
            table = per_class_table(dataset.totals, class_names, which)
            if table:
                lines += [f"### {title}", "", table, ""]
        document["datasets"][dataset.title] = {
            "methods": {name: json_floats(summary) for name, summary in summaries.items()},
            "per_class_iou": {name: {which: json_floats(dict(zip(class_names,
                                                                  getattr(s, which).per_class_iou().tolist())))
                                     for which, _ in per_class_tables}
                              for name, s in dataset.totals.items() if s.has_semantics},
            "scenes": [{"name": scene.name, **scene.info,
                        "methods": {name: json_floats(s.summary()) for name, s in scene.methods.items()}}
                       for scene in dataset.scenes],
        }
    lines += [definitions, ""]
    return write_result_files(out_dir, lines, document)


def write_result_files(out_dir: Path, lines: list[str], document: dict) -> tuple[Path, Path]:
    """Write ``lines`` to OUT/results.md and ``document`` to OUT/results.json; returns both paths."""
    markdown, json_path = out_dir / "results.md", out_dir / "results.json"
    markdown.write_text("\n".join(lines))
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    return markdown, json_path


def json_floats(values: dict[str, float]) -> dict[str, float | None]:
    """Scores rounded for JSON; NaN and inf (not JSON) become null."""
    return {k: (round(float(v), 6) if math.isfinite(v) else None) for k, v in values.items()}
