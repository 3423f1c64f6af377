"""Settings of the :class:`~semantic_recon_ros.core.mapper.Mapper` itself: classes, device, completion network."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import check_ranges, parameter

MESH_SOURCES = ("observed", "completed", "both")  # what the map's mesh shows (mesh_source), see core/surface_fields.py
SURFACE_SOURCES = (*MESH_SOURCES, "additions")  # what a mesh or voxel map can show: also the network's additions alone


@dataclass
class MapperConfig:
    """What the map holds (classes, device) and how the completion network keeps it complete."""

    classes_file: str = parameter(
        "", "Class list YAML (names and colors); empty uses the package's config/classes.yaml.")
    checkpoint: str = parameter(
        "default", "Completion network (S4R checkpoint file; ~ expanded); \"default\" = the installed "
            "share/semantic_recon_ros/models/default.pt; empty = map by fusion only. A checkpoint that is missing or "
            "does not fit the map (classes, volume.voxel_size, truncation) is logged as an error and the node maps by "
            "fusion only. With rgb_only_geometry atlas: the Atlas network, required; \"default\" = "
            "models/atlas_default.pt.")
    completion_period: float = parameter(
        2.0, "Seconds between completion runs; each reruns the chunks whose observations changed, for at most "
             "completion.time_budget seconds, the network on a low-priority thread (integration never waits for it).",
        0.1, 3600.0)
    mesh_source: str = parameter(
        "observed", "What the mesh topic and the saved mesh_rgb.ply / mesh_semantic.ply show: observed (fused "
                    "surface; the network's additions go to mesh_additions and mesh_additions.ply), completed (the "
                    "network's prediction alone, unfiltered) or both (observed surface plus the additions). Labels "
                    "combine the fused votes and the network's classes in every case. Without a completion "
                    "network: observed; with rgb_only: completed.", choices=MESH_SOURCES)
    mesh_region_size: float = parameter(
        1.0, "Edge (metres, rounded to whole blocks) of the cubic regions meshes and voxel maps are kept by: a change "
             "re-meshes only its regions, and each region is one Marker on the mesh topics.", 0.1, 1000.0)
    device: str = parameter(
        "auto", "Torch device of the volume: auto (cuda when available), cpu, cuda or cuda:N.")

    def __post_init__(self) -> None:
        check_ranges(self)
