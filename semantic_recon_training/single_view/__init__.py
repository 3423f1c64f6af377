"""Training of the single-view reconstruction (SemSVR, issue 16): synthetic rooms -> (image, frustum target) pairs,
the block autoencoder, then the image-to-latent network through the frozen decoder; export and validation."""
