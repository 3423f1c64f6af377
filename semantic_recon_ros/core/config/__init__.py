"""The core's configuration: typed dataclasses with defaults, descriptions and ranges, and their YAML loading.

Every tunable is declared once, with :func:`~.fields.parameter`; the ROS parameters, the YAML files,
the offline tools and the README's parameter table are all built from these declarations.

* :class:`VolumeConfig` (``volume.*``): the fusion volume.
* :class:`CompletionConfig` (``completion.*``): chunking and scheduling of the completion network, and how the
  map uses its predictions.
* :class:`MapperConfig` (top level): classes, device, checkpoint, what the outputs show.
* :class:`LiveSingleViewConfig` (``single_view.*``): the live single-view prediction and its fill of the map.
* :class:`StereoConfig` (``stereo.*``): the plane-sweep stereo that gives RGB-only mapping its depth.
* :mod:`.files`: reading sections from one or more layered parameter files (a base plus small diffs).
"""

from .completion import CompletionConfig
from .fields import check_ranges, config_from_dict, parameter, parameter_info, parameter_rows
from .files import load_section, read_parameters
from .mapper import MESH_SOURCES, SURFACE_SOURCES, MapperConfig
from .single_view import LiveSingleViewConfig
from .stereo import StereoConfig
from .volume import VolumeConfig

__all__ = ["CompletionConfig", "LiveSingleViewConfig", "MESH_SOURCES", "MapperConfig", "SURFACE_SOURCES",
           "StereoConfig", "VolumeConfig", "check_ranges", "config_from_dict", "load_section", "parameter",
           "parameter_info", "parameter_rows", "read_parameters"]
