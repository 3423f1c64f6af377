"""Offline, self-supervised training and evaluation of the completion network (S4R) of ``semantic_recon_ros``.

Not part of the installed ROS package: it runs from a checkout, ``python -m semantic_recon_training <command>``
(:mod:`.__main__`), with run configs in ``configs/`` and paths relative to the repository root (:mod:`.paths`).

* :mod:`.data`: from RGB-D sequences to cached training chunks (fusion, chunk grid, view selection, 2D labels)
  and the pieces the evaluation shares with it (input scan, reduced views).
* :mod:`.fitting`: a training run: its config, data preparation and loading, losses and objective, the
  Lightning module and loop, export of the inference checkpoint, loss curves.
* :mod:`.evaluation`: held-out evaluation of a checkpoint against TSDF fusion and 2D label fusion: protocol,
  reconstructions, metrics, scoring, report and plots.

Dependencies point one way: ``fitting`` and ``evaluation`` use ``data``; ``fitting`` uses the evaluation's
metrics for validation; ``data`` uses neither.
"""
