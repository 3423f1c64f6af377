"""One camera frame's semantic scene from the single-view network, and its low-weight fill of a map's unseen voxels.

:class:`SingleViewPredictor` runs a 'single_view' checkpoint (:mod:`.models.single_view`) on a frame's color image,
resampled to the camera the network was trained for (:func:`~.models.single_view.network_view`), and returns the
TSDF and class probabilities of the whole frustum grid, hidden parts included (:class:`SingleViewPrediction`), with
its semantic mesh in the camera's optical frame. The network's camera shares the frame's optical centre and
orientation, so the prediction lies in the frame's camera frame and ``T_world_cam`` places it in the world.

:func:`fill_unobserved` writes a prediction (resampled onto the map's voxels by :meth:`UnobservedFill.of`, which
needs no lock) into a map's prediction layers (those of the completion network,
:mod:`.completion`), never into its observations: only voxels never observed (``weight == 0``) are written, and only
those the completion network has not predicted (its ``pred_weight`` is 1; a fill's is ``weight`` < 1), so the map's
surface fields (:mod:`.surface_fields`) show a fill where a completion prediction would go: never as observed
surface, and in ``mesh_additions`` / the voxel map (``observed`` 0) only where its confidence, ``weight``, reaches
``completion.min_confidence``. A later fill replaces an earlier one; a completion run replaces fills in its chunks;
a voxel once observed shows its observation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .camera import PinholeCamera, check_rigid
from .completion import add_prediction_layers
from .map.block_index import unpack_keys
from .map.tsdf_volume import SemanticTSDFVolume
from .mesh import SemanticMesh
from .models import load_checkpoint
from .models.single_view import FrustumGrid, FrustumGridConfig, NetworkView, frustum_mesh, network_view
from .resources import resolve_setting, share_file

DEFAULT_SINGLE_VIEW_CHECKPOINT_FILE = "models/single_view_default.pt"  # in the package's share directory
RGBD_SINGLE_VIEW_CHECKPOINT_FILE = "models/single_view_rgbd.pt"  # the model that reads depth too
FILL_COLOR = 0.5  # pred_color of filled voxels (RGB in [0, 1]): the network predicts no color


def resolve_single_view_checkpoint(value: str | Path) -> Path:
    """The single-view checkpoint a setting names: ``"default"`` = the installed
    ``share/semantic_recon_ros/models/single_view_default.pt`` (from the color image), ``"rgbd"`` = the installed
    ``models/single_view_rgbd.pt`` (from the color and depth images), else a path (``~`` expanded).
    FileNotFoundError when it does not exist, ValueError when the setting is empty."""
    if str(value) == "rgbd":
        try:
            return share_file(RGBD_SINGLE_VIEW_CHECKPOINT_FILE)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"single-view checkpoint 'rgbd': the RGB-D single-view model is not installed "
                                    f"({error})") from None
    path = resolve_setting(value, DEFAULT_SINGLE_VIEW_CHECKPOINT_FILE, "single-view checkpoint",
                           "default single-view model")
    if path is None:
        raise ValueError("a single-view checkpoint is needed ('default', 'rgbd' or a file)")
    return path


@dataclass
class SingleViewPrediction:
    """The single-view network's frustum of one frame.

    Attributes:
        grid: the :class:`~.models.single_view.FrustumGrid` of the network's camera, ``(D, Y, X)`` cells.
        tsdf: (D, Y, X) float32 TSDF in [-1, 1] (+ = free), in units of ``grid.config.truncation`` metres.
        class_probabilities: (K, D, Y, X) float32 softmax of the class logits.
        covered: (Y, X) bool, the cell columns whose pixel the frame's image covers (all unless it was resampled from
            a wider-focal camera: elsewhere the network saw repeated border pixels).
        T_world_cam: (4, 4) float64 camera-to-world pose of the frame.
        class_names: the K classes.
        network_seconds: time of the network call.
        view: the network's input (the image as the trained camera sees it); None when not kept.
        gravity_cam: (3,) unit gravity direction in the camera frame, for networks with the gravity head; else None.
        camera_height: the camera's height above the floor (metres), with ``gravity_cam``; else None.
    """

    grid: FrustumGrid
    tsdf: torch.Tensor
    class_probabilities: torch.Tensor
    covered: torch.Tensor
    T_world_cam: np.ndarray
    class_names: tuple[str, ...]
    network_seconds: float
    view: NetworkView | None = None
    gravity_cam: torch.Tensor | None = None
    camera_height: float | None = None

    def labels(self) -> torch.Tensor:
        """(D, Y, X) int64 most probable class where ``|tsdf| < 1`` (the surface band), -1 elsewhere."""
        return torch.where(self.tsdf.abs() < 1, self.class_probabilities.argmax(dim=0),
                           torch.full_like(self.tsdf, -1, dtype=torch.int64))

    def mesh(self) -> SemanticMesh:
        """The semantic mesh of the zero level set in the camera's optical frame (metres; colors = class palette)."""
        return frustum_mesh(self.grid, self.tsdf, self.class_probabilities, self.class_names)


class SingleViewPredictor:
    """A loaded single-view network that predicts frames of any pinhole camera.

    Args:
        network: the 'single_view' checkpoint's model: ``(B, 3, H, W)`` float image in [0, 1] ->
            ``{"tsdf": (B, D, Y, X), "class_logits": (B, K, D, Y, X), ...}``.
        camera: the camera it was trained for.
        frustum: its :class:`~.models.single_view.FrustumGridConfig`.
        class_names: its K classes.
        device: where the network runs.
    """

    def __init__(self, network: torch.nn.Module, camera: PinholeCamera, frustum: FrustumGridConfig,
                 class_names: Sequence[str], device: torch.device | str) -> None:
        self.network, self.camera, self.device = network, camera, torch.device(device)
        self.grid = FrustumGrid(camera, frustum)
        self.class_names = tuple(class_names)

    @property
    def needs_depth(self) -> bool:
        """The network reads the frame's depth too (an RGB-D single-view model, ``image_to_latent.depth_input``)."""
        return bool(self.network.config.depth_input)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str) -> "SingleViewPredictor":
        """Load a 'single_view' checkpoint (ValueError for other kinds, FileNotFoundError when missing)."""
        network, info = load_checkpoint(path, device, expected_model="single_view")
        return cls(network, info.camera, info.config.frustum, info.class_names, device)

    @torch.inference_mode()
    def predict(self, color: np.ndarray, camera: PinholeCamera, T_world_cam: np.ndarray,
                depth: np.ndarray | None = None) -> SingleViewPrediction:
        """The frustum of one frame: ``color`` (H, W, 3) uint8 RGB of ``camera`` (its image size), pose (4, 4)
        camera-to-world, and ``depth`` (H, W) float32 z-depth in metres registered to the color image (read only by a
        network that :attr:`needs_depth`). ValueError when the image or depth does not fit ``camera``, covers too
        little of the network's view (:func:`~.models.single_view.network_view`), the pose is not rigid, or the
        network needs a depth that is not given."""
        pose = check_rigid(T_world_cam, "T_world_cam")
        if self.needs_depth and depth is None:
            raise ValueError("this single-view model reads the frame's depth image as well as its colors; none was "
                             "given (use an image-only model for color images alone)")
        view = network_view(color, camera, self.camera, depth if self.needs_depth else None)
        start = time.perf_counter()
        depth_input = None if view.depth is None else view.depth[None].to(self.device)
        out = self.network(view.image[None].to(self.device), depth_input)
        tsdf = out["tsdf"][0].float().cpu()
        probabilities = out["class_logits"][0].float().softmax(dim=0).cpu()
        seconds = time.perf_counter() - start
        pixels = self.grid.cell_pixels("cpu").round().long()  # (Y, X, 2) (u, v) of the cell columns' centres
        covered = view.covered[pixels[..., 1].clamp(0, self.camera.height - 1),
                               pixels[..., 0].clamp(0, self.camera.width - 1)]
        gravity = out["gravity_cam"][0].float().cpu() if "gravity_cam" in out else None
        height = float(out["camera_height"][0]) if "camera_height" in out else None
        return SingleViewPrediction(self.grid, tsdf, probabilities, covered, pose, self.class_names, seconds, view,
                                    gravity, height)


@dataclass
class FillStats:
    """What one :func:`fill_unobserved` did."""

    voxels_filled: int = 0
    blocks_allocated: int = 0
    blocks_refused: int = 0  # blocks the predicted surface passes that max_blocks left out


@dataclass
class UnobservedFill:
    """A prediction resampled onto the map's voxel grid, ready for :func:`fill_unobserved` (computed by
    :meth:`of` without the map's lock: it reads only the volume's settings).

    Attributes:
        keys: (n,) int64 keys of the blocks the frustum passes through.
        band: (n, V) bool, voxels inside the frustum grid (between its cell centres, in a covered column) whose
            predicted TSDF lies within the map's truncation band.
        tsdf: (n, V) float32 predicted TSDF in the map's units (valid where ``band``).
        probabilities: (m, K) float32 class probabilities of the ``band`` voxels, in ``band.nonzero()`` order.
        surface: (n,) bool, the predicted surface passes through the block (its predicted TSDF changes sign there).
    """

    keys: torch.Tensor
    band: torch.Tensor
    tsdf: torch.Tensor
    probabilities: torch.Tensor
    surface: torch.Tensor

    @classmethod
    def of(cls, volume: SemanticTSDFVolume, prediction: SingleViewPrediction) -> "UnobservedFill":
        """Resample ``prediction`` at the voxel centres of ``volume`` (trilinear; its TSDF, metres = value * the grid's
        truncation, renormalized by the map's truncation). ValueError when its classes are not the map's."""
        if tuple(prediction.class_names) != tuple(volume.class_names):
            raise ValueError(f"the single-view network's classes {list(prediction.class_names)} are not the map's "
                             f"{list(volume.class_names)}")
        config, device, frustum = volume.config, volume.device, prediction.grid
        keys = volume.frustum_block_keys(frustum.camera, prediction.T_world_cam, frustum.config.far)
        voxels = unpack_keys(keys)[:, None, :] * config.block_size + volume.grid.local_coords[None]  # (n, V, 3)
        T_cam_world = torch.as_tensor(np.linalg.inv(prediction.T_world_cam), dtype=torch.float32, device=device)
        points = (voxels.float() * config.voxel_size) @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
        cells = frustum.cam_to_cell_coordinates(points)  # (n, V, 3) (d, y, x)
        size = torch.tensor(frustum.shape, dtype=torch.float32, device=device)
        inside = ((cells >= 0) & (cells <= size - 1)).all(dim=-1) & (points[..., 2] > 0)
        column = cells[..., 1:].clamp(min=0).round().long()
        column = torch.minimum(column, torch.tensor(frustum.shape[1:], device=device) - 1)
        inside &= prediction.covered.to(device)[column[..., 0], column[..., 1]]
        metres = sample_frustum(prediction.tsdf[None].to(device), cells[inside], frustum.shape)[0]
        tsdf = torch.ones(inside.shape, device=device)
        tsdf[inside] = (metres * frustum.config.truncation / config.truncation).clamp(-1.0, 1.0)
        band = inside & (tsdf.abs() < 1.0)
        surface = (inside & (tsdf < 0)).any(dim=1) & (inside & (tsdf > 0)).any(dim=1)
        probabilities = sample_frustum(prediction.class_probabilities.to(device), cells[band], frustum.shape).T
        return cls(keys, band, tsdf, probabilities.contiguous(), surface)


def fill_unobserved(volume: SemanticTSDFVolume, fill: UnobservedFill, weight: float) -> FillStats:
    """Write a prediction (:meth:`UnobservedFill.of`) into the never-observed voxels of ``volume`` with ``weight``
    (see the module docstring). Hold the map's lock around this.

    The voxels written are the fill's ``band`` voxels (its predicted free space is not written: beside an observed
    surface's band it would make a false shell) that were never observed (``weight == 0``) and that the completion
    network has not predicted (``pred_weight`` below 1): ``pred_tsdf``, ``pred_semantic`` the fill's values,
    ``pred_color`` gray, ``pred_weight`` and ``pred_confidence`` ``weight``. Blocks the predicted surface passes are
    allocated (up to ``max_blocks``; counted as refused beyond); written blocks are marked rewritten (no new
    observation: the completion network does not rerun for them). ValueError when ``weight`` is not in (0, 1).
    """
    if not 0.0 < weight < 1.0:
        raise ValueError(f"the fill weight must lie in (0, 1) (the completion network's predictions weigh 1), got "
                         f"{weight}")
    add_prediction_layers(volume)
    grid, stats = volume.grid, FillStats()
    slots = grid.lookup_keys(fill.keys)
    wanted = ((slots < 0) & fill.surface).nonzero().squeeze(1)
    new = wanted[:max(grid.max_blocks - grid.num_blocks, 0)]
    stats.blocks_refused = int(wanted.numel() - new.numel())
    if new.numel():
        slots[new] = grid.allocate_keys(fill.keys[new])
        stats.blocks_allocated = int(new.numel())
    rows = torch.full(fill.band.shape, -1, dtype=torch.int64, device=volume.device)
    rows[fill.band] = torch.arange(len(fill.probabilities), device=volume.device)
    present = slots >= 0
    slots, band, tsdf, rows = slots[present], fill.band[present], fill.tsdf[present], rows[present]
    band &= (grid.layer("weight")[slots] == 0) & (grid.layer("pred_weight")[slots] < 1.0)
    block, voxel = band.nonzero(as_tuple=True)
    if block.numel() == 0:
        return stats
    target = (slots[block], voxel)
    grid.layer("pred_tsdf")[target] = tsdf[block, voxel]
    grid.layer("pred_semantic")[target] = fill.probabilities[rows[block, voxel]]
    grid.layer("pred_color")[target] = FILL_COLOR
    grid.layer("pred_weight")[target] = weight
    grid.layer("pred_confidence")[target] = weight
    grid.mark_rewritten(torch.unique(slots[block]))
    stats.voxels_filled = int(block.numel())
    return stats


def sample_frustum(values: torch.Tensor, cells: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """(C, D, Y, X) values of a frustum grid at (N, 3) fractional cell coordinates ``(d, y, x)`` inside
    ``[0, size - 1]`` -> (C, N), trilinear."""
    scale = torch.tensor([2.0 / max(n - 1, 1) for n in shape], device=cells.device)
    normalized = (cells * scale - 1.0).flip(-1)  # grid_sample wants (x, y, d) in [-1, 1]
    sampled = F.grid_sample(values[None].float(), normalized.view(1, -1, 1, 1, 3), mode="bilinear",
                            align_corners=True)
    return sampled.view(values.shape[0], -1)
