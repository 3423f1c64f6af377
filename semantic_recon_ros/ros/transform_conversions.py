"""``geometry_msgs/TransformStamped`` <-> (4, 4) rigid transforms.

A TransformStamped with ``header.frame_id = parent`` and ``child_frame_id = child`` carries
``T_parent_child``: it maps points expressed in ``child`` into ``parent``.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3

from ..core.ros_message_codec import translation_quaternion_from_transform
from ..core.transform_tree import rigid_from_translation_quaternion, translation_quaternion_from_rigid
from .header_conversions import header_msg

__all__ = ["matrix_to_transform_stamped", "transform_to_matrix", "translation_quaternion_from_transform"]


def transform_to_matrix(msg: Transform | TransformStamped) -> np.ndarray:
    """``Transform`` or ``TransformStamped`` -> (4, 4) float64 ``T_parent_child`` (quaternion normalised)."""
    transform = msg.transform if isinstance(msg, TransformStamped) else msg
    return rigid_from_translation_quaternion(*translation_quaternion_from_transform(transform))


def matrix_to_transform_stamped(
    T_parent_child: np.ndarray, stamp_ns: int, parent_frame: str, child_frame: str
) -> TransformStamped:
    """(4, 4) rigid ``T_parent_child`` -> TransformStamped ``parent_frame -> child_frame`` at ``stamp_ns``."""
    (tx, ty, tz), (qx, qy, qz, qw) = (values.tolist() for values in translation_quaternion_from_rigid(T_parent_child))
    return TransformStamped(
        header=header_msg(stamp_ns, parent_frame),
        child_frame_id=child_frame,
        transform=Transform(translation=Vector3(x=tx, y=ty, z=tz), rotation=Quaternion(x=qx, y=qy, z=qz, w=qw)),
    )
