"""ROS-free core: geometry, fusion volume, meshing, datasets and I/O.

Nothing under this package imports rclpy or any ROS message type.
"""
