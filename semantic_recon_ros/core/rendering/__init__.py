"""Differentiable rendering of dense TSDF chunks (depth, color, semantics) for self-supervised training."""

from .dense_grid import DenseGrid
from .grid_sampling import sample_grid
from .rays import RayBundle, image_rays
from .tsdf_raycaster import RaycastConfig, render, render_rays

__all__ = ["DenseGrid", "RayBundle", "RaycastConfig", "image_rays", "render", "render_rays", "sample_grid"]
