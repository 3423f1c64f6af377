"""``sensor_msgs/CameraInfo`` <-> :class:`~semantic_recon_ros.core.camera.PinholeCamera`.

:func:`camera_from_camera_info` (shared with the bag reader) reads ``k``, ``width`` and ``height``
and raises :class:`InvalidCameraInfoError` for a zero focal length; distortion is ignored (the
mapping assumes rectified images).
"""

from __future__ import annotations

from sensor_msgs.msg import CameraInfo

from ..core.camera import PinholeCamera
from ..core.ros_message_codec import InvalidCameraInfoError, camera_from_camera_info, encode_camera_info
from .header_conversions import header_msg

__all__ = ["InvalidCameraInfoError", "camera_from_camera_info", "camera_to_camera_info_msg"]


def camera_to_camera_info_msg(camera: PinholeCamera, stamp_ns: int, frame_id: str) -> CameraInfo:
    """CameraInfo of an undistorted pinhole camera (plumb_bob, zero distortion, ``p = [K | 0]``)."""
    fields = encode_camera_info(camera)
    return CameraInfo(
        header=header_msg(stamp_ns, frame_id),
        height=fields.height,
        width=fields.width,
        distortion_model=fields.distortion_model,
        d=fields.d.tolist(),
        k=fields.k,
        r=fields.r,
        p=fields.p,
    )
