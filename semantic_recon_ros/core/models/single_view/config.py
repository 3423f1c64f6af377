"""Configurations of the single-view reconstruction (SemanticSingleViewReconstruction): frustum grid, block
autoencoder, image-to-latent network and loss shaping (one parameter table each, see ``config_fields``), and
:class:`SingleViewConfig`, the three that make up a trained model."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config.fields import check_ranges, config_from_dict, parameter


@dataclass
class FrustumGridConfig:
    """The perspective voxel grid of a camera's frustum: ``cells_x x cells_y`` cells uniform in the image, times
    ``cells_depth`` cells uniform in z-depth between the near and far planes."""

    cells_x: int = parameter(64, "Cells across the image width.", 1, 1024)
    cells_y: int = parameter(48, "Cells across the image height.", 1, 1024)
    cells_depth: int = parameter(64, "Cells along the viewing direction, between the near and far planes.", 1, 1024)
    near: float = parameter(0.3, "z-depth (metres) of the front face of the first depth cell.", 0.01, 100.0)
    far: float = parameter(5.0, "z-depth (metres) of the back face of the last depth cell.", 0.02, 200.0)
    truncation: float = parameter(
        0.2, "Distance (metres) at which the TSDF saturates to +-1 and beyond which cells carry no class.",
        0.001, 10.0)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.far <= self.near:
            raise ValueError(f"FrustumGridConfig.far ({self.far}) must be beyond near ({self.near})")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape ``(D, Y, X)``: depth, image rows, image columns."""
        return (self.cells_depth, self.cells_y, self.cells_x)


@dataclass
class BlockAutoencoderConfig:
    """The headless compression: every ``block_size^3`` block of semantic TSDF cells <-> one latent code."""

    num_classes: int = parameter(13, "Number of semantic classes K (length of the class list).", 1, 1024)
    block_size: int = parameter(8, "Edge (cells) of the blocks compressed into one latent code; a power of two.",
                                2, 32)
    latent_channels: int = parameter(32, "Size of the latent code of a block.", 1, 1024)
    base_width: int = parameter(
        8, "Channels at full resolution; each halving of the resolution doubles them.", 1, 128)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.block_size & (self.block_size - 1):
            raise ValueError(f"BlockAutoencoderConfig.block_size must be a power of two, got {self.block_size}")

    @property
    def levels(self) -> int:
        """Stride-2 stages between the cells and the latent grid: ``log2(block_size)``."""
        return self.block_size.bit_length() - 1

    @property
    def input_channels(self) -> int:
        """Channels of a semantic TSDF grid: the TSDF, then the K-class one-hot."""
        return 1 + self.num_classes


@dataclass
class ImageToLatentConfig:
    """The 2D network from a color image (plus optional extra channels) to the frustum's latent grid."""

    extra_channels: int = parameter(
        0, "Input channels after the RGB (e.g. 3 for SemSVR's predicted surface normals).", 0, 64)
    base_width: int = parameter(
        16, "Channels of the first 2D stage (stride 2); the four stages have 1, 2, 4, 8 times this.", 2, 256)
    latent_blocks: int = parameter(1, "3D residual blocks refining the latent grid after the reshape.", 0, 8)
    gravity_head: bool = parameter(
        False, "Also predict the gravity direction in the camera frame and the camera's height above the floor "
               "from the image features (outputs gravity_cam, camera_height), which place an unposed prediction "
               "upright.")
    depth_input: bool = parameter(
        False, "Also read the view's depth image: its projective TSDF in the frustum grid, encoded by a small 3D "
               "network into the latent grid (an RGB-D single view: the visible surface where the depth puts it, "
               "the network completing what it hides).")

    def __post_init__(self) -> None:
        check_ranges(self)

    @property
    def input_channels(self) -> int:
        return 3 + self.extra_channels


@dataclass
class LossShapingConfig:
    """SemSVR's loss shaping: per-cell weights of the implicit values by the cell's region in the frustum.

    Regions (see :func:`~.loss_shaping.frustum_regions`): the visible surface (the truncation band around the
    first surface each camera ray meets), the free space in front of it, occluded surfaces (bands of surfaces
    behind it that free space reachable from the camera touches), occluded free space reachable from the
    visible free space (seen "around edges", weighted more the fewer flood-fill steps it lies from the visible
    free space) and the rest (solid interiors, space behind closed walls), which no view can ever tell.
    """

    visible_surface: float = parameter(50.0, "Weight of the visible surface's truncation band.", 0.0, 1e6)
    occluded_surface: float = parameter(10.0, "Weight of the truncation band of occluded surfaces.", 0.0, 1e6)
    visible_free: float = parameter(1.0, "Weight of free space between the camera and the visible surface.",
                                    0.0, 1e6)
    occluded_free_near: float = parameter(
        0.25, "Weight of occluded free space next to the visible free space (one flood-fill step away).", 0.0, 1e6)
    occluded_free_far: float = parameter(
        0.125, "Weight of occluded free space ``see_around_cells`` or more flood-fill steps away.", 0.0, 1e6)
    see_around_cells: int = parameter(
        8, "Flood-fill steps over which the occluded free space's weight falls from near to far.", 1, 1024)
    surface_reach_cells: int = parameter(
        2, "An occluded surface band counts when reachable free space lies within this many cells.", 1, 64)
    unreachable: float = parameter(0.005, "Weight of cells no free path from the camera reaches.", 0.0, 1e6)
    class_weight: float = parameter(0.5, "Weight of the class cross-entropy relative to the TSDF L1.", 0.0, 1e3)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class SingleViewConfig:
    """The whole single-view model as a checkpoint stores it: the frustum grid it predicts, the block autoencoder
    whose decoder it uses and the image-to-latent network."""

    frustum: FrustumGridConfig = field(default_factory=FrustumGridConfig)
    autoencoder: BlockAutoencoderConfig = field(default_factory=BlockAutoencoderConfig)
    image_to_latent: ImageToLatentConfig = field(default_factory=ImageToLatentConfig)

    @property
    def num_classes(self) -> int:
        return self.autoencoder.num_classes

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "SingleViewConfig":
        """From ``{"frustum": {...}, "autoencoder": {...}, "image_to_latent": {...}}`` (``dataclasses.asdict`` of
        one); ValueError naming ``source`` for unknown or missing sections and keys."""
        if not isinstance(values, dict) or set(values) != SECTIONS:
            keys = sorted(values) if isinstance(values, dict) else type(values).__name__
            raise ValueError(f"{source}: a single-view config has the sections {sorted(SECTIONS)}, got {keys}")
        return cls(**{name: config_from_dict(section_class, values[name], f"{source} [{name}]")
                      for name, section_class in (("frustum", FrustumGridConfig),
                                                  ("autoencoder", BlockAutoencoderConfig),
                                                  ("image_to_latent", ImageToLatentConfig))})


SECTIONS = {"frustum", "autoencoder", "image_to_latent"}
