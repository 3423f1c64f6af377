"""results.md, results.json and pictures of a single-view evaluation (:mod:`.frustum_evaluation`): one table per
dataset (rows the network and the baselines), the per-class IoU of the surface bands, and previews of single views
(image | predicted depth | true depth | predicted labels | predicted mesh from above)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from semantic_recon_ros.core.classes import ClassSet  # noqa: E402
from semantic_recon_ros.core.mesh import SemanticMesh  # noqa: E402
from semantic_recon_ros.core.mesh_preview import TopDownView, estimate_up  # noqa: E402
from semantic_recon_ros.core.models.single_view import FrustumGrid, LossShapingConfig  # noqa: E402

from .evaluation_protocol import EvaluationProtocol  # noqa: E402
from .evaluation_report import format_value, json_floats, write_result_files  # noqa: E402
from .mesh_views import MeshViewRenderer  # noqa: E402

PANEL_SCALE = 2  # preview panels are the network image enlarged this many times
TOP_VIEW_HEADROOM = 0.4  # metres above the camera kept in the view from above (the ceiling is cut away)

# summary key -> column heading with the better direction
FRUSTUM_COLUMNS = {
    "iou": "IoU ↑", "precision": "Prec ↑", "reachable_precision": "Prec reachable ↑", "recall": "Recall ↑",
    "hidden_recall": "hidden recall ↑",
    "miou": "mIoU ↑", "mean_class_accuracy": "mAcc ↑", "class_accuracy": "class acc ↑",
    "visible_class_accuracy": "visible acc ↑", "hidden_class_accuracy": "hidden acc ↑",
    "mesh Acc": "Acc m ↓", "mesh Comp": "Comp m ↓", "mesh Prec": "Prec 3D ↑", "mesh Recall": "Recall 3D ↑",
    "mesh F-score": "F-score ↑", "mesh no surface": "no surface ↓", "AbsRel": "AbsRel ↓", "delta<1.25": "δ<1.25 ↑", "complete": "Compl 2D ↑"}
DEPTH_COLUMNS = {
    "AbsRel": "AbsRel ↓", "AbsDiff": "AbsDiff m ↓", "SqRel": "SqRel ↓", "RMSE": "RMSE m ↓",
    "delta<1.25": "δ<1.25 ↑", "delta<1.25^2": "δ<1.25² ↑", "delta<1.25^3": "δ<1.25³ ↑", "complete": "Compl 2D ↑",
    "mIoU 2D": "mIoU 2D ↑", "mAcc 2D": "mAcc 2D ↑"}

DEFINITIONS = """\
Definitions. Synthetic rooms: {views} views per room evenly spread along its camera path (all {frames} frames
rendered at the checkpoint's camera), each scored in its frustum grid ({cells} cells, {near:g}-{far:g} m z-depth,
truncation {truncation:g} m) against the room's exact semantic TSDF. "single-view network": the checkpoint on the
view's color image alone ("(image + depth)": a model that also reads the view's true depth). "depth image + 2D
labels": what one depth image gives, the view's true depth read at each cell column's centre pixel: cells in front
of the surface free, a truncation-thick band behind it solid, all other cells unknown (counted free, unlabeled);
band cells take the column's 2D label. "RGB-D map of the frame": the project's Mapper fusing that one frame (depth,
color, 2D labels; {voxel:g} cm voxels), its TSDF read trilinearly at the cell centres (unknown unless the 8 voxels
around are observed; counted free), classes the votes of the nearest voxel. "+ network fill": that baseline with
every cell it does not know taken from the network where the network puts it in the surface band (|TSDF| < 1), with
the network's class: the node's single_view.fill_unobserved rule, observations unchanged. 2D labels: {labels}.
Cells: occupied = TSDF < 0 (inside a solid); IoU / Prec / Recall of occupied cells over every cell of the frusta;
Prec reachable = Prec leaving out the cells no free path from the camera reaches (solid interiors, space behind
closed walls: no image tells them, and the loss shaping leaves them out); hidden recall = share of the target's
occupied cells in the occluded surface bands (the solid side of surfaces hidden behind the visible one, within
{reach} cells of free space the camera's free space reaches) that the method marks occupied (one depth image marks
almost none); class acc / visible acc / hidden acc = share of the labeled cells in the surface bands (visible band,
occluded bands) given their class; mAcc, mIoU over the classes present in those cells (unlabeled cells count as
wrong); micro-summed over all views. Mesh (Atlas' 3D metrics): points every {spacing:g} cm on the method's mesh and
on the target's (marching cubes of the exact TSDF in the same grid), in the camera frame, both within the frustum:
target points in the surface bands, method points outside the cells no free path from the camera reaches; Acc / Comp
= mean distance method -> target / target -> method, Prec / Recall / F-score at {threshold:g} cm; averaged over
views (Acc, Comp and Prec 3D over the views where the method has a surface in the frustum; no surface = share of
views where it has none, which count Recall 3D and F-score 0). AbsRel, δ<1.25, Compl 2D: the depth each method's
TSDF shows each pixel of the view (as on 7-Scenes, below) against the view's true depth. 7-Scenes: frames
{first}-{last} (held back from any training) at stride {stride}, each image resampled to the trained camera (the
pixels the 640x480 image covers are scored); the network's depth in each pixel is the first zero crossing of its
TSDF along the pixel's ray; Atlas' 2D depth metrics against the captured depth (nearest pixel) where 0 < depth < 10
m, Compl 2D = share of the covered pixels with a predicted surface; averaged over frames; "constant depth" = every
pixel at the median captured depth of all scored pixels (an oracle of the scale, nothing else). mIoU 2D / mAcc 2D:
the class of the cell at the rendered surface against the 2D segmenter's labels (semantic consistency, not ground
truth)."""


@dataclass
class FrustumDataset:
    """The scenes of one dataset and their methods' scores merged (``synthetic``: frustum targets; else depth)."""

    title: str
    scenes: list
    synthetic: bool
    totals: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for scene in self.scenes:
            for name, scores in scene.methods.items():
                if name not in self.totals:
                    self.totals[name] = scores.empty()
                self.totals[name].merge(scores)


def table(summaries: dict[str, dict[str, float]], columns: dict[str, str]) -> str:
    """Markdown table, rows methods; columns where every method is NaN are left out."""
    keys = [k for k in columns if any(not math.isnan(s.get(k, math.nan)) for s in summaries.values())]
    lines = ["| method | " + " | ".join(columns[k] for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(format_value(s.get(k, math.nan)) for k in keys) + " |"
              for name, s in summaries.items()]
    return "\n".join(lines)


def per_class_table(totals: dict, class_names: Sequence[str]) -> str:
    """Per-class IoU in the surface bands (rows methods, columns the classes present)."""
    confusions = {name: scores.cells.confusion for name, scores in totals.items()}
    support = next(iter(confusions.values())).support()
    present = [k for k in range(len(class_names)) if support[k] > 0]
    lines = ["| method | " + " | ".join(class_names[k] for k in present) + " |", "|---|" + "---:|" * len(present)]
    for name, confusion in confusions.items():
        iou = confusion.per_class_iou()
        lines.append(f"| {name} | " + " | ".join(format_value(float(iou[k])) for k in present) + " |")
    share = ", ".join(f"{class_names[k]} {int(support[k])}" for k in present)
    return "\n".join(lines + ["", f"Target cells in the surface bands: {share}."])


def write_frustum_results(out_dir: Path, datasets: Sequence[FrustumDataset], class_names: Sequence[str],
                          protocol: EvaluationProtocol, grid: FrustumGrid, shaping: LossShapingConfig,
                          labels: str, stride: int, checkpoint: Path, command: str,
                          seconds: float) -> tuple[Path, Path]:
    """Write ``results.md`` and ``results.json`` of a single-view checkpoint's evaluation; returns their paths.
    ``labels``: what gave the baselines' 2D labels."""
    config = grid.config
    lines = [f"# Single-view evaluation of `{checkpoint}`", "", f"Command: `{command}`", "",
             f"Setting: one {grid.camera.width}x{grid.camera.height} color image (fx {grid.camera.fx:g}) -> its "
             f"frustum's semantic TSDF ({'x'.join(str(n) for n in grid.shape)} cells, {config.near:g}-"
             f"{config.far:g} m); baselines from the same frame's depth; 2D labels from {labels}. "
             f"Wall time {seconds / 60:.1f} min.", ""]
    document = {"checkpoint": str(checkpoint), "command": command, "seconds": round(seconds, 1),
                "protocol": dataclasses.asdict(protocol), "frustum": dataclasses.asdict(config),
                "camera": dataclasses.asdict(grid.camera), "loss_shaping_regions": dataclasses.asdict(shaping),
                "labels": labels, "class_names": list(class_names), "datasets": {}}
    for dataset in datasets:
        summaries = {name: scores.summary() for name, scores in dataset.totals.items()}
        columns = FRUSTUM_COLUMNS if dataset.synthetic else DEPTH_COLUMNS
        lines += [f"## {dataset.title}", "", f"Scenes: {', '.join(s.name for s in dataset.scenes)}.", "",
                  table(summaries, columns), ""]
        entry = {"methods": {name: json_floats(s) for name, s in summaries.items()},
                 "scenes": [{"name": scene.name, **scene.info,
                             "methods": {name: json_floats(s.summary()) for name, s in scene.methods.items()}}
                            for scene in dataset.scenes]}
        if dataset.synthetic:
            lines += ["### Per-class IoU in the surface bands", "", per_class_table(dataset.totals, class_names), ""]
            entry["per_class_iou"] = {name: json_floats(dict(zip(class_names,
                                                                  s.cells.confusion.per_class_iou().tolist())))
                                      for name, s in dataset.totals.items()}
        document["datasets"][dataset.title] = entry
    first, last = protocol.held_out_range
    lines += [DEFINITIONS.format(views=protocol.views_per_scene, frames=protocol.synthetic_frames,
                                 cells="x".join(str(n) for n in grid.shape), near=config.near, far=config.far,
                                 truncation=config.truncation, voxel=protocol.voxel_size * 100, labels=labels,
                                 reach=shaping.surface_reach_cells, spacing=protocol.mesh_sample_spacing * 100,
                                 threshold=protocol.fscore_threshold * 100, first=first, last=last - 1,
                                 stride=stride), ""]
    return write_result_files(out_dir, lines, document)


def depth_picture(depth: np.ndarray, far: float) -> np.ndarray:
    """(H, W) z-depth in metres -> (H, W, 3) uint8 colors (viridis over 0..``far``), white where invalid (<= 0)."""
    colors = matplotlib.colormaps["viridis"](np.clip(np.nan_to_num(depth) / far, 0, 1))[..., :3]
    colors[~(np.nan_to_num(depth) > 0)] = 1.0
    return (colors * 255).round().astype(np.uint8)


def frustum_preview(path: Path, image: np.ndarray, predicted_depth: np.ndarray, true_depth: np.ndarray,
                    mesh: SemanticMesh, grid: FrustumGrid, classes: ClassSet, title: str) -> Path:
    """One view side by side: ``image`` (H, W, 3) uint8 of the grid's camera, the predicted and true depth (H, W)
    metres, the labels of ``mesh`` (camera frame) seen from the camera and the mesh from above, with the title and a
    legend of the classes shown."""
    camera = grid.camera
    size = (camera.width * PANEL_SCALE, camera.height * PANEL_SCALE)

    def enlarged(picture: np.ndarray) -> Image.Image:
        return Image.fromarray(picture).resize(size, Image.Resampling.NEAREST)

    _, labels = MeshViewRenderer(mesh).render(camera.scaled(*size), np.eye(4))
    seen = np.where((labels >= 0)[..., None], classes.colorize(labels), 255).astype(np.uint8)
    panels = [enlarged(image), enlarged(depth_picture(predicted_depth, grid.config.far)),
              enlarged(depth_picture(true_depth, grid.config.far)), Image.fromarray(seen)]
    if mesh.num_triangles:
        top = TopDownView(up=estimate_up([np.eye(4)], mesh), max_height=TOP_VIEW_HEADROOM,
                          max_pixels=size[1]).render(mesh, classes.colorize(mesh.labels))
        panels.append(Image.fromarray(top).resize((max(1, round(top.shape[1] * size[1] / top.shape[0])), size[1]),
                                                  Image.Resampling.NEAREST))
    gap, header, swatch = 8, 22, 12
    present = [k for k in range(classes.num_classes) if (mesh.labels == k).any() or (labels == k).any()]
    legend_rows = (len(present) + 5) // 6
    width = sum(p.width for p in panels) + gap * (len(panels) + 1)
    canvas = Image.new("RGB", (width, size[1] + header + 2 * gap + legend_rows * (swatch + 6)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((gap, 5), title, fill="black", font=font)
    x = gap
    for panel in panels:
        canvas.paste(panel, (x, header))
        x += panel.width + gap
    for n, k in enumerate(present):
        x, y = gap + (n % 6) * 130, header + size[1] + gap + (n // 6) * (swatch + 6)
        draw.rectangle((x, y, x + swatch, y + swatch), fill=tuple(int(c) for c in classes.colors[k]), outline="black")
        draw.text((x + swatch + 5, y), classes.names[k], fill="black", font=font)
    canvas.save(path)
    return path
