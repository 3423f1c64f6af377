"""ROS-free core: the map (:mod:`.mapper`, storage and fusion in :mod:`.map`), its configuration (:mod:`.config`),
completion, meshing, voxel maps, models, rendering, datasets, synthetic scenes and I/O.

Nothing under this package imports rclpy or any ROS message type.
"""
