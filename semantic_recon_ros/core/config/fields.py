"""Typed configuration fields that carry their own description and valid range.

Every tunable of the core is a dataclass field made with :func:`parameter`. That single declaration
is the parameter table: ROS parameter declarations, YAML loading, CLI help and the README table are
all generated from it, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ParameterInfo:
    """Description and valid range of one configuration field (inclusive bounds, None = open)."""

    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None

    def range_text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.low is None and self.high is None:
            return ""
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}]"


def parameter(default: Any, description: str, low: float | None = None, high: float | None = None,
              choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with a description and an inclusive valid range (or a set of string choices)."""
    info = ParameterInfo(description, low, high, choices)
    return dataclasses.field(default=default, metadata={"parameter": info})


def parameter_info(field: dataclasses.Field) -> ParameterInfo:
    info = field.metadata.get("parameter")
    if info is None:
        raise TypeError(f"config field {field.name!r} was not declared with parameter()")
    return info


def check_ranges(config: Any) -> None:
    """Raise ValueError naming the field when a value of a config dataclass is outside its range or type."""
    for field in dataclasses.fields(config):
        info = parameter_info(field)
        value = getattr(config, field.name)
        expected = type(field.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            object.__setattr__(config, field.name, value)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise ValueError(f"{type(config).__name__}.{field.name} must be {expected.__name__}, got {value!r}")
        if info.choices and value not in info.choices:
            raise ValueError(f"{type(config).__name__}.{field.name} must be one of {info.choices}, got {value!r}")
        if info.low is not None and value < info.low or info.high is not None and value > info.high:
            raise ValueError(f"{type(config).__name__}.{field.name} = {value!r} is outside {info.range_text()}")


def config_from_dict(cls: type[T], values: Mapping[str, Any], source: str = "config") -> T:
    """Build ``cls`` from a mapping, rejecting unknown keys (typos) with the list of known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}")
    return cls(**dict(values))


def parameter_rows(cls: type) -> list[tuple[str, Any, str, str]]:
    """``(name, default, description, range)`` for every field of a config dataclass."""
    rows = []
    for field in dataclasses.fields(cls):
        info = parameter_info(field)
        rows.append((field.name, field.default, info.description, info.range_text()))
    return rows
