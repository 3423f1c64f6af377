"""Held-out evaluation of a completion checkpoint next to plain TSDF fusion and 2D label fusion, of an RGB-only
(Atlas) checkpoint next to the RGB-D map, and of a single-view checkpoint next to what one RGB-D frame gives.

:mod:`.evaluate` (the ``evaluate`` command) runs the :mod:`.evaluation_protocol` (held-out scenes, their input
frames and held-out views) through :mod:`.scene_evaluation` (completion) or :mod:`.rgb_only_evaluation` (RGB-only):
the methods' :mod:`.reconstructions` or meshes are scored by :mod:`.evaluation_scoring` with :mod:`.metrics`
(meshes rendered into held-out views by :mod:`.mesh_views`), and :mod:`.evaluation_report` /
:mod:`.rgb_only_report` / :mod:`.evaluation_plots` write the tables and figures; :mod:`.held_out` refuses scenes the
checkpoint has seen. Single-view checkpoints go through :mod:`.frustum_evaluation` (baselines
:mod:`.frustum_baselines`, tables and previews :mod:`.frustum_report`). :mod:`.metrics` also serves the validation of
a training run.
"""
