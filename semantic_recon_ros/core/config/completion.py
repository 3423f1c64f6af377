"""Configuration of running the completion network over the live map and of using its predictions (one
parameter table)."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import check_ranges, parameter


@dataclass
class CompletionConfig:
    """How the map is cut into dense chunks for the completion network, how often they are rerun, and how the map
    uses the predictions (which surfaces it adds, whose labels win)."""

    chunk_size: int = parameter(
        64, "Edge of the dense chunks fed to the network, in voxels (multiple of 16 and of block_size).", 16, 256)
    chunk_margin: int = parameter(
        8, "Context voxels on each side of a chunk; only its centre (chunk_size - 2 margin) is written, so "
           "neighbouring chunks overlap by 2 margin (multiple of block_size).", 0, 64)
    batch_size: int = parameter(
        1, "Chunks per network call (each chunk of the batch adds its activations to the peak memory).", 1, 64)
    time_budget: float = parameter(
        2.0, "Seconds one completion run may take; chunks still pending wait for the next run.", 0.01, 3600.0)
    min_observed_voxels: int = parameter(
        64, "Chunks with fewer observed voxels in their input are not run.", 0, 10**8)
    min_confidence: float = parameter(
        0.6, "The network's surface is added to the map only where its calibrated confidence (the probability, "
             "measured on validation rooms, that it lies within 5 cm of the true surface) is at least this; "
             "new blocks are allocated for predicted surfaces only there. 0 keeps every prediction.", 0.0, 1.0)
    label_override_probability: float = parameter(
        0.4, "Where a voxel has fused 2D label votes, the network's class replaces them when the network's "
             "probability for it exceeds this (1: fused labels wherever a voxel has votes). Voxels without votes "
             "take the network's class.", 0.0, 1.0)
    align_grid: bool = parameter(
        True, "Shift the chunk grid by whole blocks so that the fewest chunks cover the observed surface; chosen "
              "at the first run that finds observations and kept until the map is reset.")
    precision: str = parameter(
        "auto", "Arithmetic of the completion network's 3D convolutions on the CPU: float32, bfloat16 (half the "
                "activation memory; fast only where the CPU computes bfloat16 natively, AMX or AVX512-BF16), or auto: "
                "bfloat16 on such CPUs, float32 elsewhere and on GPUs (RGB-only mapping's network: float32).",
        choices=("auto", "float32", "bfloat16"))

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.chunk_size % 16:
            raise ValueError(f"CompletionConfig.chunk_size must be a multiple of 16, got {self.chunk_size}")
        if self.chunk_size - 2 * self.chunk_margin < 16:
            raise ValueError("CompletionConfig: chunk_size - 2 * chunk_margin must leave at least 16 voxels")

    @property
    def core_size(self) -> int:
        """Voxels per axis each chunk writes."""
        return self.chunk_size - 2 * self.chunk_margin
