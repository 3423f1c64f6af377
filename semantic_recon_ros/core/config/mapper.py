"""Settings of the :class:`~semantic_recon_ros.core.mapper.Mapper` itself: classes, device, completion network."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import check_ranges, parameter

SURFACE_SOURCES = ("observed", "completed", "both")  # what a mesh or voxel map shows, see core/surface_fields.py


@dataclass
class MapperConfig:
    """What the map holds (classes, device) and how the completion network keeps it complete."""

    classes_file: str = parameter(
        "", "Class list YAML (names and colors); empty uses the package's config/classes.yaml.")
    checkpoint: str = parameter(
        "default", "Completion network (S4R checkpoint file; ~ expanded); \"default\" = the installed "
            "share/semantic_recon_ros/models/default.pt; empty = map by fusion only (also with rgb_only). A checkpoint "
            "that is missing or does not fit the map (classes, volume.voxel_size, truncation) is logged as an error "
            "and the node maps by fusion only.")
    completion_period: float = parameter(
        2.0, "Seconds between completion runs; each reruns the chunks whose observations changed, for at most "
             "completion.time_budget seconds, the network on a low-priority thread (integration never waits for it).",
        0.1, 3600.0)
    mesh_source: str = parameter(
        "both", "What the mesh, the voxel map and saved meshes show: observed (fused data only), completed (the "
                "completion network's prediction) or both (observed where observed, predicted elsewhere). Without a "
                "completion network: observed.", choices=SURFACE_SOURCES)
    device: str = parameter(
        "auto", "Torch device of the volume: auto (cuda when available), cpu, cuda or cuda:N.")

    def __post_init__(self) -> None:
        check_ranges(self)
