"""The ROS 2 I/O layer: rclpy message conversions, TF buffer, time synchronisation, bag playback.

Everything here may import rclpy and ROS message packages; the mapping core
(:mod:`semantic_recon_ros.core`) never does. Where a ROS package is missing from this machine
(``tf2_ros``, ``message_filters``), the modules fall back to small API-compatible implementations:

* :mod:`.image_conversions`, :mod:`.camera_info_conversions`, :mod:`.transform_conversions`,
  :mod:`.header_conversions`: messages <-> numpy / core types.
* :mod:`.tf_buffer`: ``Buffer`` and ``TransformListener`` (tf2_ros when installed).
* :mod:`.time_sync`: ``Subscriber`` and ``ApproximateTimeSynchronizer`` (message_filters when installed).
* :mod:`.bag_player`: republishes a ROS 2 bag (read with rosbags) on live topics.
"""
