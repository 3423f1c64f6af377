"""Self-supervised training of the completion network (outside the installed package; run from the repo root).

Data: :mod:`.chunk_extraction` fuses a sequence (:mod:`.dense_volume`), cuts it on a chunk grid
(:mod:`.chunk_grid`), picks each chunk's best views (:mod:`.view_selection`) with 2D labels
(:mod:`.pseudo_labels`) and caches everything; :mod:`.chunk_dataset` reads the cache. Supervision:
:mod:`.losses` (named loss terms and their weights), :mod:`.virtual_views` (extra cameras for the
virtual-view semantic loss) and :mod:`.objective` (rendering + all losses of a batch). Evaluation:
:mod:`.metrics`.
"""
