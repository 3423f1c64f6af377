"""The voxel map -> ``sensor_msgs/PointCloud2``, built from the bytes of a numpy structured array.

One point per voxel near the surface, at the voxel centre (world frame): the observed voxels near the
fused surface, and with a completion network (the node's voxel map shows source ``both``, see
:mod:`~semantic_recon_ros.core.surface_fields`) the voxels the network adds near its predicted surface where its
calibrated confidence reaches ``completion.min_confidence``, with fields

=============  ==========  ======  ==============================================================
field          datatype    offset  meaning
=============  ==========  ======  ==============================================================
``x y z``      FLOAT32     0 4 8   voxel centre, metres
``rgb``        FLOAT32     12      color packed as ``0x00RRGGBB`` in the float's bits (PCL/RViz convention):
                                   fused where observed, predicted elsewhere
``label``      INT32       16      class of the fused votes and the network's probabilities combined (the
                                   network's where it is sure enough, see ``surface_fields``); -1 = unlabeled
``confidence`` FLOAT32     20      winning share of the votes / probability (0 when unlabeled)
``observed``   UINT8       24      1 = seen by the sensor; 0 = filled by the completion network only
``surface_     FLOAT32     28      1 where observed; where filled by the network, the calibrated
confidence``                       probability that its surface there is right (filter on it)
=============  ==========  ======  ==============================================================

``point_step`` is 32 bytes (3 bytes of padding after ``observed``), little-endian, ``height`` 1, ``is_dense``
true.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from ..core.voxel_map import VOXEL_POINT_DTYPE
from .header_conversions import header_msg

_DATATYPES = {"x": PointField.FLOAT32, "y": PointField.FLOAT32, "z": PointField.FLOAT32, "rgb": PointField.FLOAT32,
              "label": PointField.INT32, "confidence": PointField.FLOAT32, "observed": PointField.UINT8,
              "surface_confidence": PointField.FLOAT32}
_NUMPY_TYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "<i2", PointField.UINT16: "<u2",
                PointField.INT32: "<i4", PointField.UINT32: "<u4", PointField.FLOAT32: "<f4", PointField.FLOAT64: "<f8"}


def voxel_points_to_pointcloud2(points: np.ndarray, frame_id: str, stamp_ns: int) -> PointCloud2:
    """(N,) :data:`VOXEL_POINT_DTYPE` array -> PointCloud2 (one row, fields as in the module docstring)."""
    if points.dtype != VOXEL_POINT_DTYPE or points.ndim != 1:
        raise ValueError(f"expected a 1-D VOXEL_POINT_DTYPE array, got {points.dtype} with shape {points.shape}")
    fields = [PointField(name=name, offset=VOXEL_POINT_DTYPE.fields[name][1], datatype=_DATATYPES[name], count=1)
              for name in VOXEL_POINT_DTYPE.names]
    msg = PointCloud2(header=header_msg(stamp_ns, frame_id), height=1, width=len(points), fields=fields,
                      is_bigendian=False, point_step=VOXEL_POINT_DTYPE.itemsize,
                      row_step=VOXEL_POINT_DTYPE.itemsize * len(points), is_dense=True)
    msg.data = points.tobytes()
    return msg


def pointcloud2_to_array(msg: PointCloud2) -> np.ndarray:
    """Any little-endian PointCloud2 -> (height * width,) structured array with its fields (by name and datatype).

    Raises ValueError for big-endian clouds, array fields (count > 1), unknown datatypes or a data
    length that disagrees with ``row_step * height``.
    """
    if msg.is_bigendian:
        raise ValueError("big-endian PointCloud2 is not supported")
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.count != 1 or f.datatype not in _NUMPY_TYPES:
            raise ValueError(f"PointCloud2 field {f.name!r}: datatype {f.datatype} with count {f.count} is not supported")
        names.append(f.name)
        formats.append(_NUMPY_TYPES[f.datatype])
        offsets.append(f.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if len(data) != msg.row_step * msg.height or msg.row_step < msg.point_step * msg.width:
        raise ValueError(f"PointCloud2 data has {len(data)} bytes; row_step {msg.row_step} x height {msg.height} "
                         f"with width {msg.width} x point_step {msg.point_step} expected")
    rows = data.reshape(msg.height, msg.row_step)[:, : msg.point_step * msg.width]
    return np.ascontiguousarray(rows).view(dtype).reshape(-1)
