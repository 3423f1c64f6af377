"""Helpers shared by the test groups (``core/``, ``ros/``, ``train/``, ``commands/``, ``packaging/``): repository
paths, frame downscaling, DDS child processes, a spinning test node and an RViz-like marker view.

``setup.cfg`` puts ``test/`` on the import path, so tests import them as ``support.<module>``.
"""
