"""Reconstruct the semantic scene in one color image's frustum, hidden parts included (SemSVR, issue 16).

The single-view network (by default the installed models/single_view_default.pt; --checkpoint FILE for another)
predicts the TSDF and class of every cell of the camera's frustum grid (depth along the view, e.g. 64 x 48 x 64
cells from 0.3 to 5 m), behind the visible surface too. Writes to the output folder, everything in the camera's
optical frame (x right, y down, z forward; metres): mesh_semantic.ply (the zero level set, a class label per vertex,
colored by class), prediction.npz (tsdf (D, Y, X) in [-1, 1], + = free; labels (D, Y, X), the class where
|tsdf| < 1, -1 elsewhere; cell_centers (D, Y, X, 3); the class names, the intrinsics of the network input and the
grid settings), preview.png (the image, the labeled mesh seen from the camera and from above) and summary.json
(with a model that has the gravity head also its predicted gravity_cam, camera_height and T_upright_cam, the
camera's pose in an upright frame: z up, the floor at z = 0).

Image size and intrinsics: the network was trained for one camera (its checkpoint's). The image's intrinsics are
--intrinsics (in its pixels) or, for an image of the trained aspect ratio, the checkpoint's camera scaled to its
size. The image is resized to the trained image size and, when its camera is not the trained one (focal lengths
beyond 5 %, principal point beyond 3 % of the image size), resampled to the trained camera's view
(:func:`~semantic_recon_ros.core.models.single_view.network_view`; summary.json states it and the share of that
view the image covers). An image covering less than 70 % of the trained view is refused.

A model that reads depth as well (an RGB-D single view, ``image_to_latent.depth_input``) needs --depth, a 16-bit PNG
registered to the color image (same size and camera; --depth-scale raw units per metre, 1000 for millimetres; 0 and
65535 are invalid); an image-only model ignores it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import open3d as o3d
from PIL import Image, ImageDraw, ImageFont

from ..core.camera import PinholeCamera
from ..core.classes import ClassSet
from ..core.datasets.image_files import read_color, read_depth
from ..core.device import resolve_device
from ..core.mesh import SemanticMesh
from ..core.mesh_preview import TopDownView, estimate_up
from ..core.ply import write_semantic_ply

ASPECT_TOLERANCE = 0.01  # relative
PANEL_HEIGHT = 240  # pixels of each preview panel
TOP_VIEW_HEADROOM = 0.4  # metres above the camera kept in the view from above (the ceiling is cut away)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="color image (PNG, JPEG, ...)")
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                        help="pinhole intrinsics in the image's pixels (default: the checkpoint's camera scaled to "
                             "the image size)")
    parser.add_argument("--depth", type=Path,
                        help="16-bit depth PNG registered to the image (read by a model with depth input)")
    parser.add_argument("--depth-scale", type=float, default=1000.0,
                        help="raw depth units per metre (default 1000: millimetres)")
    parser.add_argument("--checkpoint", default="default",
                        help="single-view checkpoint file, or 'default' (the installed "
                             "models/single_view_default.pt)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (the default), auto, cuda, cuda:1")


def image_camera(image_size: tuple[int, int], intrinsics: list[float] | None,
                 trained: PinholeCamera) -> PinholeCamera:
    """The camera of the given image: ``intrinsics`` (fx, fy, cx, cy in its pixels), or ``trained`` scaled to its
    size ``(width, height)`` when it has the trained aspect ratio. ValueError when neither applies or the
    intrinsics do not fit the image."""
    width, height = image_size
    if intrinsics is None:
        if abs(width * trained.height / (height * trained.width) - 1) > ASPECT_TOLERANCE:
            raise ValueError(f"the image is {width}x{height}; the network was trained for {trained.width}x"
                             f"{trained.height} images (another aspect ratio): give its --intrinsics")
        return trained.scaled(width, height)
    camera = PinholeCamera(*intrinsics, width, height)
    if not (-0.5 <= camera.cx <= width - 0.5 and -0.5 <= camera.cy <= height - 0.5):
        raise ValueError(f"--intrinsics do not fit the {width}x{height} image: the principal point ({camera.cx:g}, "
                         f"{camera.cy:g}) lies outside it (intrinsics of another image size?)")
    return camera


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
    from ..core.models.single_view import upright_from_camera  # the models are only needed here
    from ..core.single_view_prediction import SingleViewPredictor, resolve_single_view_checkpoint

    if not args.checkpoint:
        raise ValueError("--checkpoint must name a single-view checkpoint (or 'default')")
    checkpoint = resolve_single_view_checkpoint(args.checkpoint)
    color = read_color(args.image)
    height, width = color.shape[:2]
    predictor = SingleViewPredictor.from_checkpoint(checkpoint, resolve_device(args.device))
    camera, grid = predictor.camera, predictor.grid
    depth = None
    if args.depth is not None:
        if args.depth_scale <= 0:
            raise ValueError(f"--depth-scale must be positive, got {args.depth_scale}")
        depth = read_depth(args.depth, args.depth_scale, expected_size=(width, height), invalid_raw_values=(0, 65535))
    elif predictor.needs_depth:
        raise ValueError(f"{checkpoint.name} reads depth as well as color: give the image's --depth")
    prediction = predictor.predict(color, image_camera((width, height), args.intrinsics, camera), np.eye(4), depth)
    view, tsdf = prediction.view, prediction.tsdf
    mesh = prediction.mesh()
    classes = ClassSet.from_names(predictor.class_names)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_semantic_ply(out / "mesh_semantic.ply", mesh, predictor.class_names)
    config = grid.config
    np.savez_compressed(out / "prediction.npz", tsdf=tsdf.numpy(), labels=prediction.labels().numpy().astype(np.int8),
                        cell_centers=grid.cell_centers_cam("cpu").numpy(), class_names=np.array(predictor.class_names),
                        intrinsics=np.array([camera.fx, camera.fy, camera.cx, camera.cy]),
                        image_size=np.array([camera.width, camera.height]), near=config.near, far=config.far,
                        truncation=config.truncation)
    title = f"{args.image.name}: {mesh.num_triangles} triangles by {checkpoint.name}"
    shown = (view.image.permute(1, 2, 0) * 255).round().byte().numpy()
    preview(shown, mesh, camera, classes, title).save(out / "preview.png")
    summary = {"image": str(args.image), "image_size": [width, height], "checkpoint": str(checkpoint),
               "network_input": [camera.width, camera.height], "depth_input": predictor.needs_depth,
               "resampled": view.resampled,
               "coverage": round(view.coverage, 3),
               "intrinsics": [round(v, 4) for v in (camera.fx, camera.fy, camera.cx, camera.cy)],
               "frustum_cells": list(grid.shape), "network_seconds": round(prediction.network_seconds, 3),
               "vertices": mesh.num_vertices, "triangles": mesh.num_triangles,
               "occupied_cells": int((tsdf < 0).sum()),
               "classes": {classes.names[i]: int((mesh.labels == i).sum()) for i in range(classes.num_classes)
                           if (mesh.labels == i).any()}}
    if prediction.gravity_cam is not None:  # a model with the gravity head: the camera's pose upright, floor-level
        gravity, camera_height = prediction.gravity_cam, prediction.camera_height
        summary |= {"gravity_cam": [round(float(g), 4) for g in gravity], "camera_height": round(camera_height, 3),
                    "T_upright_cam": upright_from_camera(gravity, camera_height).round(decimals=4).tolist()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0
