"""Plots of an evaluation (matplotlib PNGs, no display needed): per-class IoU bars, depth error histograms, and
side-by-side top-down previews of the target and the methods' meshes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from semantic_recon_ros.core.classes import ClassSet  # noqa: E402
from semantic_recon_ros.core.mesh import SemanticMesh  # noqa: E402
from semantic_recon_ros.core.mesh_preview import TopDownView  # noqa: E402

PREVIEW_PIXELS = 360


def per_class_iou_plot(path: Path, class_names: Sequence[str], per_method: dict[str, np.ndarray], title: str) -> Path:
    """Grouped bars: for each class present (non-NaN for some method), one bar per method."""
    present = [k for k in range(len(class_names)) if any(np.isfinite(v[k]) for v in per_method.values())]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(present) + 2), 4))
    width = 0.8 / max(1, len(per_method))
    x = np.arange(len(present))
    for i, (name, iou) in enumerate(per_method.items()):
        ax.bar(x + (i - (len(per_method) - 1) / 2) * width, np.nan_to_num(iou[present]), width, label=name)
    ax.set_xticks(x, [class_names[k] for k in present], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def depth_error_histogram(path: Path, errors: dict[str, dict[str, np.ndarray]], max_error: float = 0.5) -> Path:
    """One panel per dataset: histograms of |rendered - target| depth per method (errors above ``max_error``
    metres are counted in the last bin)."""
    fig, axes = plt.subplots(1, len(errors), figsize=(5.5 * len(errors), 3.8), squeeze=False)
    bins = np.linspace(0, max_error, 51)
    for ax, (dataset, per_method) in zip(axes[0], errors.items()):
        for name, values in per_method.items():
            if len(values):
                ax.hist(np.minimum(values, max_error), bins=bins, histtype="step", density=True, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("|depth error| (m), held-out views")
        ax.set_ylabel("density")
        ax.set_title(dataset)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mesh_preview(path: Path, meshes: dict[str, SemanticMesh], classes: ClassSet, view: TopDownView,
                 title: str) -> Path:
    """Top-down renders side by side, one column per mesh: color on top, semantic labels below."""
    view = TopDownView(view.up, view.max_height, PREVIEW_PIXELS)
    columns = []
    for mesh in meshes.values():
        columns.append((view.render(mesh, mesh.colors), view.render(mesh, classes.colorize(mesh.labels))))
    width = max(max(a.shape[1], b.shape[1]) for a, b in columns)
    height = max(a.shape[0] for a, _ in columns) + max(b.shape[0] for _, b in columns)
    gap, header = 10, 36
    canvas = Image.new("RGB", (len(columns) * (width + gap) + gap, height + header + 2 * gap), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((gap, 4), title, fill="black", font=font)
    top_height = max(a.shape[0] for a, _ in columns)
    for i, (name, (rgb, semantic)) in enumerate(zip(meshes, columns)):
        x = gap + i * (width + gap)
        draw.text((x, 20), f"{name} ({meshes[name].num_triangles} triangles)", fill="black", font=font)
        canvas.paste(Image.fromarray(rgb), (x, header))
        canvas.paste(Image.fromarray(semantic), (x, header + top_height + gap))
    canvas.save(path)
    return path
