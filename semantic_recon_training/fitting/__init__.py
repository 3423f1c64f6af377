"""A training run: config, data preparation and loading, objective, Lightning training, export.

:mod:`.training_config` (the run config and its YAML layers), :mod:`.data_sources` (a run's scenes: generated
rooms and recorded sequences, cut into chunk caches), :mod:`.data_module` (their train / validation loaders),
:mod:`.losses` (named loss terms and their weights), :mod:`.objective` (rendering + all losses of a batch),
:mod:`.lightning_module` and :mod:`.fit` (the Lightning module and trainer), :mod:`.export` (the inference
checkpoint the mapping node loads) and :mod:`.loss_curves` (PNG plots of the logged losses).
"""
