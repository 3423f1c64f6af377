"""Which chunks of a completion engine see a set of changed blocks, computed independently of the engine's planner."""

from __future__ import annotations

import torch


def chunks_seeing(engine, changed_blocks: torch.Tensor) -> set[tuple[int, int, int]]:
    """Chunk indices whose input box (core plus margin) holds one of ``changed_blocks`` ((N, 3) block coordinates),
    from the engine's public chunk geometry (``core_blocks``, ``margin_blocks``, ``grid_offset``)."""
    cb, mb = engine.core_blocks, engine.margin_blocks
    touched = set()
    for b in (changed_blocks - engine.grid_offset).tolist():
        ranges = [range((v - mb - cb) // cb + 1, (v + mb) // cb + 1) for v in b]
        touched |= {(x, y, z) for x in ranges[0] for y in ranges[1] for z in ranges[2]}
    return touched
