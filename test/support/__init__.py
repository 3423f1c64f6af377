"""Helpers shared by the test groups (``core/``, ``ros/``, ``train/``, ``commands/``, ``packaging/``): repository
paths, frame downscaling, DDS child processes, the mapping node as a child process with a frame publisher and a
viewer of its outputs, a spinning test node, an RViz-like marker view, checks of saved map folders and processes
that die by SIGKILL while saving.

``setup.cfg`` puts ``test/`` on the import path, so tests import them as ``support.<module>``.
"""
