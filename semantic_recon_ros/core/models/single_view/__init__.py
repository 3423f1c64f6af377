"""Single-view semantic scene reconstruction after SemanticSingleViewReconstruction (Denninger & Triebel).

A color image gives the semantic TSDF of its camera's whole frustum, hidden parts included:

* :mod:`.frustum_grid`: the perspective voxel grid of the frustum, depth along the viewing direction;
* :mod:`.frustum_target`: the exact semantic TSDF of a synthetic room in that grid (the training target; imported
  from there, not here: it needs the synthetic generator, which the node does not load);
* :mod:`.block_autoencoder`: the headless compression of blocks of semantic TSDF into latent codes, trained first;
* :mod:`.image_to_latent`: the image -> latent grid network, decoded by the frozen block decoder (optionally
  reading the view's depth too: an RGB-D single view);
* :mod:`.depth_frustum`: a depth image's projective TSDF and known mask in the frustum grid (that depth input);
* :mod:`.loss_shaping`: SemSVR's weighting of the implicit values by visible / occluded / unreachable region;
* :mod:`.frustum_mesh`: the semantic mesh of a predicted frustum, in the camera frame;
* :mod:`.view_resampling`: any camera's image as the network's trained camera sees it;
* :mod:`.frustum_rendering`: a predicted frustum rendered differentiably into a posed view (expected depth, soft
  silhouette), SSR's semi-supervision by real images without 3D labels.

A trained model (:class:`SingleViewConfig`: frustum grid, autoencoder, image network) is stored as a 'single_view'
checkpoint (:mod:`..checkpoint`) with the camera it was trained for.

Size at the default configs (a 160x120 image, a 64 x 48 x 64 frustum grid from 0.3 to 5 m, 8^3-cell blocks with
32-value codes, so a latent grid of 8 x 6 x 8 codes): block encoder 78,040 parameters, block decoder 185,894,
image-to-latent network 530,096 (trained; the decoder in it is frozen), its depth encoder (RGB-D) 72,288. Measured
on this machine's CPU, one thread, inference mode (``OMP_NUM_THREADS=1 .venv/bin/python
bench/bench_single_view.py``): image -> latent grid 4.6 ms, image -> decoded frustum (TSDF and 13 class logits of
all 196,608 cells) 62 ms, encoding a frustum 39 ms; two threads: 45 ms per image. The depth input adds about 4 ms.
The exact target of one frustum of a synthetic room takes about 0.3 s.
"""

from .block_autoencoder import BlockAutoencoder, BlockDecoder, BlockEncoder, random_block_crops, semantic_tsdf_channels
from .config import (BlockAutoencoderConfig, FrustumGridConfig, ImageToLatentConfig, LossShapingConfig,
                     SingleViewConfig)
from .frustum_grid import FrustumGrid
from .frustum_mesh import frustum_mesh
from .frustum_rendering import FrustumRenderConfig, render_frustum
from .image_to_latent import GravityHead, ImageToLatentNet, upright_from_camera
from .loss_shaping import REGIONS, frustum_regions, loss_shaping_weights, shaped_losses
from .view_resampling import NetworkView, network_view, resample_view

__all__ = [
    "REGIONS", "BlockAutoencoder", "BlockAutoencoderConfig", "BlockDecoder", "BlockEncoder", "FrustumGrid",
    "FrustumGridConfig", "FrustumRenderConfig", "GravityHead", "ImageToLatentConfig", "ImageToLatentNet",
    "LossShapingConfig", "NetworkView", "SingleViewConfig", "frustum_mesh", "frustum_regions", "loss_shaping_weights",
    "network_view", "random_block_crops", "render_frustum", "resample_view", "semantic_tsdf_channels",
    "shaped_losses", "upright_from_camera",
]
