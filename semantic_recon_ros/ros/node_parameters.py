"""ROS parameters of the mapping node, declared from the core's config dataclasses (the one parameter table).

Every field of every section of :data:`.node_config.SECTIONS` becomes one
declared parameter (``world_frame``, ``volume.voxel_size``...) whose default, description and range
come from the field's :func:`~semantic_recon_ros.core.config.fields.parameter` declaration:
``ParameterDescriptor.floating_point_range`` / ``integer_range`` carry the range (rclpy rejects values
outside it, from a params file as from ``-p``), ``additional_constraints`` lists string choices. The
parameters are read-only: they are read once to build the volume and the node.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.node import Node

from ..core.config.fields import ParameterInfo, parameter_info
from .node_config import SECTIONS, parameter_name

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def parameter_descriptor(info: ParameterInfo, default: Any) -> ParameterDescriptor:
    """ParameterDescriptor of one config field: description, read-only, and its range or choices."""
    descriptor = ParameterDescriptor(description=info.description, read_only=True)
    if info.choices:
        descriptor.additional_constraints = f"one of: {', '.join(info.choices)}"
    has_range = info.low is not None or info.high is not None
    if has_range and isinstance(default, float):
        low = float("-inf") if info.low is None else float(info.low)
        high = float("inf") if info.high is None else float(info.high)
        descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    elif has_range and isinstance(default, int) and not isinstance(default, bool):
        low = INT64_MIN if info.low is None else int(info.low)
        high = INT64_MAX if info.high is None else int(info.high)
        descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
    return descriptor


def declare_section(node: Node, section: str, cls: type) -> Any:
    """Declare every field of config dataclass ``cls`` under ``section`` and build ``cls`` from the values.

    Raises ValueError naming the parameter when a value (params file or ``-p``) has the wrong type,
    lies outside its range or breaks a constraint of ``cls``.
    """
    values = {}
    for field in dataclasses.fields(cls):
        name = parameter_name(section, field.name)
        try:
            parameter = node.declare_parameter(name, field.default, parameter_descriptor(parameter_info(field), field.default))
        except ParameterException as error:
            raise ValueError(f"parameter {name}: {error}") from None
        values[field.name] = parameter.value
    return cls(**values)


def declare_sections(node: Node) -> dict[type, Any]:
    """Declare the parameters of every section of :data:`~.node_config.SECTIONS`; returns ``{config class: instance}``."""
    return {cls: declare_section(node, section, cls) for section, cls in SECTIONS}
