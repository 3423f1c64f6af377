"""The map's storage and fusion: block-sparse layers (:class:`BlockGrid`), the semantic TSDF volume that fuses
frames into them (:class:`SemanticTSDFVolume`, with the kernel and torch back-ends of :mod:`.fusion_backends`)
and its files (:mod:`.persistence`). Modules outside this package use only these public APIs."""

from .block_grid import BlockGrid
from .persistence import atomic_torch_save, load_volume, read_volume_state, restore_volume, save_volume, volume_state
from .tsdf_volume import IntegrationStats, SemanticTSDFVolume

__all__ = ["BlockGrid", "IntegrationStats", "SemanticTSDFVolume", "atomic_torch_save", "load_volume",
           "read_volume_state", "restore_volume", "save_volume", "volume_state"]
