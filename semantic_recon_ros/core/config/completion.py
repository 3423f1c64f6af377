"""Configuration of running the completion network over the live map (one parameter table)."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import check_ranges, parameter


@dataclass
class CompletionConfig:
    """How the map is cut into dense chunks for the completion network and how often they are rerun."""

    chunk_size: int = parameter(
        64, "Edge of the dense chunks fed to the network, in voxels (multiple of 16 and of block_size).", 16, 256)
    chunk_margin: int = parameter(
        8, "Context voxels on each side of a chunk; only its centre (chunk_size - 2 margin) is written, so "
           "neighbouring chunks overlap by 2 margin (multiple of block_size).", 0, 64)
    batch_size: int = parameter(2, "Chunks per network call.", 1, 64)
    time_budget: float = parameter(
        2.0, "Seconds one completion run may take; chunks still pending wait for the next run.", 0.01, 3600.0)
    min_observed_voxels: int = parameter(
        64, "Chunks with fewer observed voxels in their input are not run.", 0, 10**8)
    fill_radius: int = parameter(
        3, "Predictions are kept only within this many voxels (along each axis) of an observed surface voxel; "
           "farther ones are discarded (the network is unreliable there, e.g. behind observed walls). 0 keeps "
           "every prediction. At most chunk_margin.", 0, 64)
    align_grid: bool = parameter(
        True, "Shift the chunk grid by whole blocks so that the fewest chunks cover the observed surface; chosen "
              "at the first run that finds observations and kept until the map is reset.")

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.chunk_size % 16:
            raise ValueError(f"CompletionConfig.chunk_size must be a multiple of 16, got {self.chunk_size}")
        if self.chunk_size - 2 * self.chunk_margin < 16:
            raise ValueError("CompletionConfig: chunk_size - 2 * chunk_margin must leave at least 16 voxels")
        if self.fill_radius > self.chunk_margin:
            raise ValueError(f"CompletionConfig.fill_radius ({self.fill_radius}) must not exceed chunk_margin "
                             f"({self.chunk_margin}): a chunk cannot see observations farther out")

    @property
    def core_size(self) -> int:
        """Voxels per axis each chunk writes."""
        return self.chunk_size - 2 * self.chunk_margin
