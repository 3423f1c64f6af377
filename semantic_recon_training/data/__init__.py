"""Training data: a posed RGB-D sequence cut into cached training chunks, and the dataset reading them.

:mod:`.chunk_extraction` fuses a sequence into an input volume (the seeded frame subset of :mod:`.input_scan`)
and a target volume, copies them densely (:mod:`.dense_volume`), cuts them on a chunk grid (:mod:`.chunk_grid`),
picks each chunk's best views (:mod:`.view_selection`, views of :mod:`.view_images`) with 2D labels
(:mod:`.pseudo_labels`) and caches everything; :mod:`.chunk_dataset` reads the cache. :mod:`.virtual_views`
samples the extra cameras around a chunk for the virtual-view semantic loss. :mod:`.training_record` is what a
network was trained and validated on, stored in its checkpoint at export. The evaluation reuses
:mod:`.input_scan`, :mod:`.view_images` and :mod:`.pseudo_labels` so that it scans scenes as training does.
"""
