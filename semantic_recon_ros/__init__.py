"""semantic_recon_ros: live semantic 3D reconstruction for ROS 2.

The ROS-free mapping core lives in :mod:`semantic_recon_ros.core`; it imports only
torch, numpy, open3d and the standard library.
"""

__version__ = "0.1.0"
