"""Benchmark: size and CPU time of the single-view reconstruction model (SemSVR) at its default configuration.

Builds the block autoencoder and the image-to-latent network with random weights (the time does not depend on
them) for a 160x120 image and the default 64 x 48 x 64 frustum grid, and prints a markdown table: parameters of
each part, then the mean time of one image -> latent grid, one image -> decoded frustum (TSDF and class logits of
every cell) and one frustum's encoding, over ``--repeats`` runs after a warm-up, in inference mode; then the same
network reading a depth image too (``depth_input``, the RGB-D model) next to it.

    .venv/bin/python bench/bench_single_view.py [--threads 1] [--repeats 10] [--width 160 --height 120]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from semantic_recon_ros.core.models.single_view import (BlockAutoencoder, BlockAutoencoderConfig, FrustumGridConfig,
                                                         ImageToLatentConfig, ImageToLatentNet)


def mean_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frustum, autoencoder_config = FrustumGridConfig(), BlockAutoencoderConfig()
    autoencoder = BlockAutoencoder(autoencoder_config).eval()
    net = ImageToLatentNet(ImageToLatentConfig(), frustum, autoencoder.decoder).eval()
    rgbd = ImageToLatentNet(ImageToLatentConfig(depth_input=True), frustum, autoencoder.decoder).eval()
    image = torch.rand(1, 3, args.height, args.width)
    depth = 0.5 + 4 * torch.rand(1, args.height, args.width)
    grid = torch.rand(1, autoencoder_config.input_channels, *frustum.shape)
    with torch.inference_mode():
        latent = net.predict_latent(image)
        times = {"image -> latent grid": mean_seconds(lambda: net.predict_latent(image), args.repeats),
                 "image -> decoded frustum": mean_seconds(lambda: net(image), args.repeats),
                 "image + depth -> decoded frustum (RGB-D)": mean_seconds(lambda: rgbd(image, depth), args.repeats),
                 "frustum -> latent grid (encoder)": mean_seconds(lambda: autoencoder.encoder(grid), args.repeats),
                 "latent grid -> frustum (decoder)": mean_seconds(lambda: autoencoder.decoder(latent), args.repeats)}
    image_net = parameters(net) - parameters(net.decoder)
    print(f"{args.width}x{args.height} image, frustum grid {frustum.shape} (D, Y, X), latent grid "
          f"{tuple(latent.shape[1:])}, {args.threads} thread(s)\n")
    print("| part | parameters |\n|---|---|")
    print(f"| block encoder | {parameters(autoencoder.encoder):,} |\n| block decoder (frozen in the image network) | "
          f"{parameters(autoencoder.decoder):,} |\n| image-to-latent network (trained) | {image_net:,} |\n"
          f"| depth encoder of the RGB-D model (trained) | {parameters(rgbd.depth):,} |\n")
    print("| step | ms |\n|---|---|")
    for name, seconds in times.items():
        print(f"| {name} | {1000 * seconds:.1f} |")


if __name__ == "__main__":
    main()
