"""Training of the single-view reconstruction (SemSVR, issue 16): synthetic rooms -> (image, frustum target) pairs,
the block autoencoder, then the image-to-latent network through the frozen decoder; SSR's semi-supervision by real
posed RGB-D images without 3D labels (:mod:`.real_views`, :mod:`.view_losses`) and the gravity / height head; export
and validation (synthetic rooms, and the rendered depth on real frames: :mod:`.real_depth_evaluation`)."""
