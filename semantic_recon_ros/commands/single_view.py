"""Reconstruct the semantic scene in one color image's frustum, hidden parts included (SemSVR, issue 16).

The single-view network (by default the installed models/single_view_default.pt; --checkpoint FILE for another)
predicts the TSDF and class of every cell of the camera's frustum grid (depth along the view, e.g. 64 x 48 x 64
cells from 0.3 to 5 m), behind the visible surface too. Writes to the output folder, everything in the camera's
optical frame (x right, y down, z forward; metres): mesh_semantic.ply (the zero level set, a class label per vertex,
colored by class), prediction.npz (tsdf (D, Y, X) in [-1, 1], + = free; labels (D, Y, X), the class where
|tsdf| < 1, -1 elsewhere; cell_centers (D, Y, X, 3); the class names, the intrinsics of the network input and the
grid settings), preview.png (the image, the labeled mesh seen from the camera and from above) and summary.json.

Image size and intrinsics: the network was trained for one camera (its checkpoint's). The image is resized to that
camera's image size and its intrinsics (--intrinsics, in the given image's pixels; default: the checkpoint's camera
scaled to the image size) scaled with it. This is accepted when the aspect ratio is the checkpoint's (within 1 %)
and the scaled intrinsics are the checkpoint's within 5 % for the focal lengths and 3 % of the image size for the
principal point; otherwise the view differs from what the network learned and the command refuses it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import open3d as o3d
import torch
from PIL import Image, ImageDraw, ImageFont

from ..core.camera import PinholeCamera
from ..core.classes import ClassSet
from ..core.datasets.image_files import read_color
from ..core.device import resolve_device
from ..core.mesh import SemanticMesh
from ..core.mesh_preview import TopDownView, estimate_up
from ..core.ply import write_semantic_ply
from ..core.resources import resolve_setting

DEFAULT_SINGLE_VIEW_CHECKPOINT_FILE = "models/single_view_default.pt"  # in the package's share directory
ASPECT_TOLERANCE = 0.01  # relative
FOCAL_TOLERANCE = 0.05  # relative
PRINCIPAL_POINT_TOLERANCE = 0.03  # of the image size
PANEL_HEIGHT = 240  # pixels of each preview panel
TOP_VIEW_HEADROOM = 0.4  # metres above the camera kept in the view from above (the ceiling is cut away)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="color image (PNG, JPEG, ...)")
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                        help="pinhole intrinsics in the image's pixels (default: the checkpoint's camera scaled to "
                             "the image size)")
    parser.add_argument("--checkpoint", default="default",
                        help="single-view checkpoint file, or 'default' (the installed "
                             f"{DEFAULT_SINGLE_VIEW_CHECKPOINT_FILE})")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (the default), auto, cuda, cuda:1")


def network_camera(image_size: tuple[int, int], intrinsics: list[float] | None,
                   trained: PinholeCamera) -> PinholeCamera:
    """The camera of the network input: the image's (``intrinsics`` fx, fy, cx, cy in its pixels, or ``trained``
    scaled to its size ``(width, height)``) scaled to ``trained``'s image size. ValueError when the intrinsics do not
    fit the image or the view is not the trained camera's (the rule of the module docstring)."""
    width, height = image_size
    if abs(width * trained.height / (height * trained.width) - 1) > ASPECT_TOLERANCE:
        raise ValueError(f"the image is {width}x{height}; the network was trained for {trained.width}x{trained.height} "
                         "images (another aspect ratio): crop the image to that aspect ratio (and its intrinsics)")
    camera = trained.scaled(width, height) if intrinsics is None else PinholeCamera(*intrinsics, width, height)
    if not (-0.5 <= camera.cx <= width - 0.5 and -0.5 <= camera.cy <= height - 0.5):
        raise ValueError(f"--intrinsics do not fit the {width}x{height} image: the principal point ({camera.cx:g}, "
                         f"{camera.cy:g}) lies outside it (intrinsics of another image size?)")
    scaled = camera.scaled(trained.width, trained.height)
    focal = max(abs(scaled.fx / trained.fx - 1), abs(scaled.fy / trained.fy - 1))
    offset = max(abs(scaled.cx - trained.cx) / trained.width, abs(scaled.cy - trained.cy) / trained.height)
    if focal > FOCAL_TOLERANCE or offset > PRINCIPAL_POINT_TOLERANCE:
        raise ValueError(
            f"the image's intrinsics at {trained.width}x{trained.height} (fx {scaled.fx:.1f}, fy {scaled.fy:.1f}, cx "
            f"{scaled.cx:.1f}, cy {scaled.cy:.1f}) are not the camera the network was trained for (fx "
            f"{trained.fx:.1f}, fy {trained.fy:.1f}, cx {trained.cx:.1f}, cy {trained.cy:.1f}): focal lengths must "
            f"agree within {FOCAL_TOLERANCE:.0%} and the principal point within {PRINCIPAL_POINT_TOLERANCE:.0%} of "
            "the image size")
    return scaled


def camera_render(mesh: SemanticMesh, camera: PinholeCamera, colors: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, 3) uint8 picture of ``mesh`` (camera frame) seen by ``camera`` enlarged ``scale`` times, ``colors``
    (N, 3) per vertex, shaded by the angle between ray and surface; white where no ray hits."""
    width, height = round(camera.width * scale), round(camera.height * scale)
    view = camera.scaled(width, height)
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    directions = np.stack(((u - view.cx) / view.fx, (v - view.cy) / view.fy, np.ones_like(u, dtype=float)), axis=-1)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    rays = np.concatenate((np.zeros_like(directions), directions), axis=-1).astype(np.float32)
    image = np.full((height, width, 3), 255.0)
    if mesh.num_triangles == 0:
        return image.astype(np.uint8)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(mesh.vertices.astype(np.float32), mesh.triangles.astype(np.uint32))
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    triangle = hit["primitive_ids"].numpy().astype(np.int64)
    valid = triangle != o3d.t.geometry.RaycastingScene.INVALID_ID
    corners = mesh.triangles[triangle[valid]]
    uv = hit["primitive_uvs"].numpy()[valid]
    barycentric = np.stack((1 - uv.sum(axis=1), uv[:, 0], uv[:, 1]), axis=1)
    color = (colors[corners].astype(np.float64) * barycentric[..., None]).sum(axis=1)
    shade = 0.35 + 0.65 * np.abs((hit["primitive_normals"].numpy()[valid] * directions[valid]).sum(axis=1))
    image[valid] = color * shade[:, None]
    return image.clip(0, 255).astype(np.uint8)


def preview(color: np.ndarray, mesh: SemanticMesh, camera: PinholeCamera, classes: ClassSet,
            title: str) -> Image.Image:
    """The image, the labeled mesh seen from the camera and seen from above (along the up of its floor and table
    tops, :func:`estimate_up`), side by side, with a title and a legend of the classes present."""
    scale = PANEL_HEIGHT / camera.height
    panels = [np.asarray(Image.fromarray(color).resize((round(camera.width * scale), PANEL_HEIGHT),
                                                       Image.Resampling.BILINEAR)),
              camera_render(mesh, camera, mesh.colors, scale)]
    if mesh.num_triangles:
        top = TopDownView(up=estimate_up([np.eye(4)], mesh), max_height=TOP_VIEW_HEADROOM,
                          max_pixels=PANEL_HEIGHT).render(mesh, mesh.colors)
        panels.append(np.asarray(Image.fromarray(top).resize(
            (max(1, round(top.shape[1] * PANEL_HEIGHT / top.shape[0])), PANEL_HEIGHT), Image.Resampling.NEAREST)))
    gap, header, swatch = 10, 24, 14
    present = [i for i in range(classes.num_classes) if (mesh.labels == i).any()]
    legend_rows = (len(present) + 3) // 4
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) + 1)
    canvas = Image.new("RGB", (max(width, 4 * 160 + gap), PANEL_HEIGHT + header + 2 * gap
                               + legend_rows * (swatch + 6)), "white")
    x = gap
    for panel in panels:
        canvas.paste(Image.fromarray(panel), (x, header))
        x += panel.shape[1] + gap
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((gap, 6), f"{title}   |   image, prediction seen from the camera, from above", fill="black", font=font)
    for k, index in enumerate(present):
        x, y = gap + (k % 4) * 160, PANEL_HEIGHT + header + gap + (k // 4) * (swatch + 6)
        draw.rectangle((x, y, x + swatch, y + swatch), fill=tuple(int(c) for c in classes.colors[index]),
                       outline="black")
        draw.text((x + swatch + 6, y + 1), classes.names[index], fill="black", font=font)
    return canvas


def run(args: argparse.Namespace) -> int:
    from ..core.models import load_checkpoint  # the models package is only needed here
    from ..core.models.single_view import FrustumGrid, frustum_mesh

    checkpoint = resolve_setting(args.checkpoint, DEFAULT_SINGLE_VIEW_CHECKPOINT_FILE, "checkpoint",
                                 "default single-view model")
    if checkpoint is None:
        raise ValueError("--checkpoint must name a single-view checkpoint (or 'default')")
    color = read_color(args.image)
    height, width = color.shape[:2]
    device = resolve_device(args.device)
    network, info = load_checkpoint(checkpoint, device, expected_model="single_view")
    camera = network_camera((width, height), args.intrinsics, info.camera)
    grid = FrustumGrid(camera, info.config.frustum)
    start = time.perf_counter()
    resized = np.asarray(Image.fromarray(color).resize((camera.width, camera.height), Image.Resampling.BILINEAR))
    image = torch.as_tensor(resized, device=device).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        prediction = network(image)
    tsdf, logits = prediction["tsdf"][0].float().cpu(), prediction["class_logits"][0].float().cpu()
    network_seconds = time.perf_counter() - start
    labels = torch.where(tsdf.abs() < 1, logits.argmax(dim=0), torch.full_like(tsdf, -1, dtype=torch.int64))
    mesh = frustum_mesh(grid, tsdf, logits.softmax(dim=0), info.class_names)
    classes = ClassSet.from_names(info.class_names)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_semantic_ply(out / "mesh_semantic.ply", mesh, info.class_names)
    config = info.config.frustum
    np.savez_compressed(out / "prediction.npz", tsdf=tsdf.numpy(), labels=labels.numpy().astype(np.int8),
                        cell_centers=grid.cell_centers_cam("cpu").numpy(), class_names=np.array(info.class_names),
                        intrinsics=np.array([camera.fx, camera.fy, camera.cx, camera.cy]),
                        image_size=np.array([camera.width, camera.height]), near=config.near, far=config.far,
                        truncation=config.truncation)
    title = f"{args.image.name}: {mesh.num_triangles} triangles by {checkpoint.name}"
    preview(color, mesh, camera, classes, title).save(out / "preview.png")
    summary = {"image": str(args.image), "image_size": [width, height], "checkpoint": str(checkpoint),
               "network_input": [camera.width, camera.height],
               "intrinsics": [round(v, 4) for v in (camera.fx, camera.fy, camera.cx, camera.cy)],
               "frustum_cells": list(grid.shape), "network_seconds": round(network_seconds, 3),
               "vertices": mesh.num_vertices, "triangles": mesh.num_triangles,
               "occupied_cells": int((tsdf < 0).sum()),
               "classes": {classes.names[i]: int((mesh.labels == i).sum()) for i in range(classes.num_classes)
                           if (mesh.labels == i).any()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0
