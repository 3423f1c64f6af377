"""Training the Atlas RGB-only network: feature-volume chunk caches from posed RGB-D sequences (depth only as the
target), the multi-scale TSDF and semantic losses, the Lightning module, fitting and export."""
