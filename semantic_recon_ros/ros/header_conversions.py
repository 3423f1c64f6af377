"""``builtin_interfaces/Time`` and ``std_msgs/Header`` <-> integer nanoseconds."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from ..core.ros_message_codec import ns_to_sec_nanosec, stamp_to_ns

__all__ = ["header_msg", "stamp_to_ns", "time_msg"]


def time_msg(stamp_ns: int) -> Time:
    """Integer nanoseconds (>= 0) -> ``builtin_interfaces/Time``."""
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return Time(sec=sec, nanosec=nanosec)


def header_msg(stamp_ns: int, frame_id: str) -> Header:
    """``std_msgs/Header`` with the given stamp (nanoseconds) and frame id."""
    return Header(stamp=time_msg(stamp_ns), frame_id=frame_id)
