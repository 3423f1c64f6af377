"""``atlas-diagnose``: what the back-projected features of an Atlas chunk cache tell about where the surface is,
before any network is trained on them.

Per scene, over the voxels that depth observed and some view's features reached, grouped by the target TSDF
(normalized by the truncation): the surface (|t| < 0.25), the band in front of it (0.25 < t < 1) and behind it
(-1 < t < -0.25), free space (t = +1) and occluded space (t = -1):

- **log-spread**: the mean over voxels of log(standard deviation of the views' RGB) (the network's spread input,
  :meth:`AtlasNet.volume_statistics`). A surface point looks alike from every view, a point off it does not: the
  lower the surface's value against the band's, the more a network can find the surface from the spread alone.
- **side cue**: how often the sign of ``mean view direction . grad(log-spread)`` matches the TSDF's sign in the band
  (0.5 = chance). The direction points toward the cameras; a voxel in front of a surface has its spread rising toward
  them, one behind it falling. This is the cue that tells in front from behind; averaged over all views, whichever
  side they looked from, it is weak.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from semantic_recon_ros.core.models.atlas_net import log_spread
from semantic_recon_ros.core.models.model_config import COLOR_CHANNELS, DIRECTION_CHANNELS

from .atlas_dataset import AtlasChunkDataset

REGIONS = ("surface", "front band", "behind band", "free", "occluded")


def region_masks(target_tsdf: torch.Tensor) -> dict[str, torch.Tensor]:
    """(X, Y, Z) normalized target TSDF -> bool masks of :data:`REGIONS`."""
    t = target_tsdf
    return {"surface": t.abs() < 0.25, "front band": (t > 0.25) & (t < 1), "behind band": (t < -0.25) & (t > -1),
            "free": t >= 1, "occluded": t <= -1}


def side_cue(spread: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """(X, Y, Z) log-spread and (3, X, Y, Z) mean view direction -> (X, Y, Z) ``direction . grad(spread)``
    (central differences; 0 on the border voxels)."""
    gradient = torch.zeros_like(direction)
    for axis in range(3):
        inner = [slice(1, -1) if a == axis else slice(None) for a in range(3)]
        ahead = [slice(2, None) if a == axis else slice(None) for a in range(3)]
        behind = [slice(None, -2) if a == axis else slice(None) for a in range(3)]
        gradient[(axis, *inner)] = (spread[tuple(ahead)] - spread[tuple(behind)]) / 2
    unit = direction / direction.norm(dim=0, keepdim=True).clamp(min=1e-6)
    return (gradient * unit).sum(dim=0)


def diagnose_cache(cache_dir: str | Path, every: int = 1) -> dict:
    """The statistics of one chunk cache (every ``every``-th chunk): ``{"chunks", "voxels": {region: n},
    "log_spread": {region: mean}, "side_cue": fraction of band voxels whose cue has the TSDF's sign}``."""
    dataset = AtlasChunkDataset([cache_dir], "color")
    color = COLOR_CHANNELS
    image_channels = COLOR_CHANNELS + DIRECTION_CHANNELS
    counts = dict.fromkeys(REGIONS, 0)
    sums = dict.fromkeys(REGIONS, 0.0)
    agree = band_voxels = 0
    indices = range(0, len(dataset), every)
    for index in indices:
        sample = dataset[index]
        moments = sample["features"]
        mean = moments[:image_channels]
        spread = log_spread(mean[:color], moments[image_channels:image_channels + color]).mean(dim=0)
        valid = sample["target_observed"][0] & sample["seen"][0]
        target = sample["target_tsdf"][0]
        for region, mask in region_masks(target).items():
            selected = mask & valid
            counts[region] += int(selected.sum())
            sums[region] += float(spread[selected].sum())
        band = valid & (target.abs() < 1) & (target.abs() > 0.1)
        band[[0, -1]] = False
        band[:, [0, -1]] = False
        band[:, :, [0, -1]] = False
        cue = side_cue(spread, mean[color:image_channels])
        agree += int(((cue > 0) == (target > 0))[band].sum())
        band_voxels += int(band.sum())
    return {"chunks": len(indices), "voxels": counts,
            "log_spread": {r: sums[r] / counts[r] if counts[r] else float("nan") for r in REGIONS},
            "side_cue": agree / band_voxels if band_voxels else float("nan")}


def diagnostics_table(results: dict[str, dict]) -> str:
    """Markdown table of :func:`diagnose_cache` results by scene name."""
    lines = ["| scene | chunks | " + " | ".join(f"log-spread {r}" for r in REGIONS) + " | side cue (band) |",
             "|---|---|" + "---|" * (len(REGIONS) + 1)]
    for name, result in results.items():
        spreads = " | ".join(f"{result['log_spread'][r]:.2f}" for r in REGIONS)
        lines.append(f"| {name} | {result['chunks']} | {spreads} | {result['side_cue']:.3f} |")
    return "\n".join(lines)


def diagnose(cache_dirs: dict[str, Path], every: int = 1, names: Sequence[str] | None = None) -> str:
    """The table of the named caches (all by default)."""
    chosen = names or list(cache_dirs)
    return diagnostics_table({name: diagnose_cache(cache_dirs[name], every) for name in chosen})
