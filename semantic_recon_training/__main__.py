"""``python -m semantic_recon_training <command>``: the one entry point of training.

Run it from the repository root, or from anywhere with the repository root on ``PYTHONPATH``: relative paths
inside run configs are relative to the repository root in either case (:mod:`.paths`).

Commands:

* ``extract``  generate the config's synthetic rooms and cut every scene into a chunk cache
* ``fit``      train with PyTorch Lightning (``--resume`` continues from the last Lightning checkpoint;
  ``--max-steps`` / ``--max-time`` extend its budget)
* ``export``   Lightning checkpoint -> inference checkpoint (``load_checkpoint`` / the mapping node), with the scenes
  the network was trained and validated on
* ``plot``     loss curves of a run (PNG) from its CSV logs
* ``atlas-extract``, ``atlas-fit``, ``atlas-export``: the same three steps for the Atlas RGB-only network
  (:mod:`.atlas`; default config ``semantic_recon_training/configs/atlas.yaml``); ``atlas-diagnose`` tells what its
  caches' features say about the surface before any training
* ``single-view-extract``, ``single-view-fit``, ``single-view-export``: the same three steps for the single-view
  reconstruction (SemSVR, :mod:`.single_view`; default config ``semantic_recon_training/configs/single_view.yaml``;
  fit trains the block autoencoder, then the image-to-latent network), and ``single-view-evaluate``: its frustum
  occupancy IoU, hidden-part recall and class accuracy on the config's validation rooms; ``single-view-real-depth``:
  its rendered depth and gravity direction on the real validation frames of a semi-supervised config
  (``configs/single_view_ssr.yaml``)
* ``evaluate`` evaluate an inference checkpoint on held-out scenes (:mod:`.evaluation.evaluate`)
* ``calibrate`` fit the confidence of a checkpoint's predicted surface on the validation rooms and store it in the
  checkpoint, or check it on other rooms (:mod:`.evaluation.calibration`)

Every command but ``evaluate`` and ``calibrate`` reads a YAML run config (``--config``; default
``semantic_recon_training/configs/default.yaml``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial
from pathlib import Path
from typing import Callable

from .paths import CONFIG_DIR, REPO_ROOT

COMMANDS = {
    "extract": "Generate synthetic rooms and cut every scene of a config into chunk caches.",
    "fit": "Train the completion network (Lightning); --resume continues the last checkpoint.",
    "export": "Write the inference checkpoint of a Lightning checkpoint.",
    "plot": "Plot the loss curves of a run from its CSV logs (PNG).",
    "atlas-extract": "Generate synthetic rooms and cut every scene of an Atlas config into feature-volume chunks.",
    "atlas-fit": "Train the Atlas RGB-only network (Lightning); --resume continues the last checkpoint.",
    "atlas-export": "Write the inference checkpoint of an Atlas Lightning checkpoint.",
    "atlas-diagnose": "What an Atlas cache's features tell about the surface: the views' spread by region, the side cue.",
    "single-view-extract": "Render the synthetic rooms of a single-view config and cache (image, frustum target) pairs.",
    "single-view-fit": "Train the single-view model: block autoencoder, then image-to-latent (--resume continues).",
    "single-view-export": "Write the single-view inference checkpoint of the two stages' Lightning checkpoints.",
    "single-view-evaluate": "Frustum IoU, hidden-part recall and class accuracy of a single-view checkpoint.",
    "single-view-real-depth": "Rendered depth and gravity of a single-view checkpoint on real validation frames.",
    "evaluate": "Evaluate an inference checkpoint on held-out scenes.",
    "calibrate": "Fit (validation rooms) or check the confidence calibration of a checkpoint's predicted surface.",
}
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
ATLAS_CONFIG = CONFIG_DIR / "atlas.yaml"
SINGLE_VIEW_CONFIG = CONFIG_DIR / "single_view.yaml"


@dataclasses.dataclass(frozen=True)
class _Network:
    """What the extract / fit / export commands of one trained network use; ``steps()`` imports its modules (only
    when one of its commands runs) and returns (load_config, prepare_scenes, fit, export)."""

    default_config: Path
    steps: Callable[[], tuple[Callable, ...]]


def _s4r_steps() -> tuple[Callable, ...]:
    from .fitting.data_sources import prepare_scenes
    from .fitting.export import export_checkpoint
    from .fitting.fit import fit
    from .fitting.training_config import load_run_config

    return load_run_config, prepare_scenes, fit, export_checkpoint


def _atlas_steps() -> tuple[Callable, ...]:
    from .atlas.atlas_config import load_atlas_config
    from .atlas.atlas_scenes import prepare_atlas_scenes
    from .atlas.atlas_training import export_atlas, fit_atlas

    return load_atlas_config, prepare_atlas_scenes, fit_atlas, export_atlas


def _single_view_steps() -> tuple[Callable, ...]:
    from .single_view.single_view_config import load_single_view_config
    from .single_view.single_view_data import prepare_single_view_scenes
    from .single_view.single_view_training import export_single_view, fit_single_view

    return load_single_view_config, prepare_single_view_scenes, fit_single_view, export_single_view


S4R = _Network(DEFAULT_CONFIG, _s4r_steps)
ATLAS = _Network(ATLAS_CONFIG, _atlas_steps)
SINGLE_VIEW = _Network(SINGLE_VIEW_CONFIG, _single_view_steps)


def _add_config(parser: argparse.ArgumentParser, network: _Network = S4R) -> None:
    parser.add_argument("--config", type=Path, default=network.default_config,
                        help=f"run config YAML (default: {network.default_config.relative_to(REPO_ROOT)})")


def _add_extract(parser: argparse.ArgumentParser, network: _Network) -> None:
    _add_config(parser, network)
    parser.add_argument("--only", nargs="+", metavar="SCENE", help="extract only these scenes of the config")
    parser.add_argument("--overwrite", action="store_true", help="render and extract again even when done")


def _run_extract(args: argparse.Namespace, network: _Network) -> int:
    import torch

    load_config, prepare_scenes, _, _ = network.steps()
    config = load_config(args.config)
    if config.trainer.num_threads:
        torch.set_num_threads(config.trainer.num_threads)
    caches = prepare_scenes(config, only=args.only, overwrite=args.overwrite)
    for name, cache in caches.items():
        print(f"{name}: {cache}")
    return 0


def _add_fit(parser: argparse.ArgumentParser, network: _Network) -> None:
    _add_config(parser, network)
    parser.add_argument("--resume", action="store_true",
                        help="continue from <output_dir>/checkpoints/last.ckpt (error if there is none)")
    parser.add_argument("--max-steps", type=int, help="override trainer.max_steps")
    parser.add_argument("--max-time", metavar="DD:HH:MM:SS",
                        help="override trainer.max_time (counted across --resume; '' = no limit)")
    parser.add_argument("--accelerator", help="override trainer.accelerator (cpu, gpu, ...)")
    parser.add_argument("--devices", type=int, help="override trainer.devices (per node; > 1 runs DDP)")
    parser.add_argument("--num-nodes", type=int, help="override trainer.num_nodes (> 1 runs DDP across nodes)")


FIT_OVERRIDES = ("max_steps", "max_time", "accelerator", "devices", "num_nodes")  # trainer.<name> = --<name>


def _run_fit(args: argparse.Namespace, network: _Network) -> int:
    load_config, _, fit, _ = network.steps()
    config = load_config(args.config)
    overrides = {name: getattr(args, name) for name in FIT_OVERRIDES if getattr(args, name) is not None}
    config = dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, **overrides))
    fit(config, resume=args.resume)
    return 0


def _add_export(parser: argparse.ArgumentParser, network: _Network) -> None:
    _add_config(parser, network)
    parser.add_argument("--checkpoint", type=Path,
                        help="Lightning checkpoint (default: <output_dir>/checkpoints/last.ckpt of the config)")
    parser.add_argument("--out", type=Path, required=True, help="inference checkpoint to write (.pt)")


def _run_export(args: argparse.Namespace, network: _Network) -> int:
    load_config, _, _, export = network.steps()
    config = load_config(args.config)
    source = args.checkpoint or Path(config.trainer.output_dir) / "checkpoints" / "last.ckpt"
    info = export(source, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): {info}")
    return 0


def _add_plot(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    parser.add_argument("--out", type=Path, help="PNG to write (default: <output_dir>/loss_curves.png)")


def _run_plot(args: argparse.Namespace) -> int:
    from .fitting.loss_curves import plot_loss_curves
    from .fitting.training_config import load_run_config

    config = load_run_config(args.config)
    out = args.out or Path(config.trainer.output_dir) / "loss_curves.png"
    print(f"wrote {plot_loss_curves(config.trainer.output_dir, out)}")
    return 0


def _evaluation_module(command: str):
    """:mod:`.evaluation.evaluate` or :mod:`.evaluation.calibration`, imported only when ``command`` (``evaluate``,
    ``calibrate``) runs (the other commands do not load them)."""
    if command == "calibrate":
        from .evaluation import calibration

        return calibration
    from .evaluation import evaluate

    return evaluate


EVALUATION_COMMANDS = ("evaluate", "calibrate")


def _add_single_view_evaluate(parser: argparse.ArgumentParser) -> None:
    _add_config(parser, SINGLE_VIEW)
    parser.add_argument("--checkpoint", type=Path, required=True, help="single-view inference checkpoint (.pt)")
    parser.add_argument("--out", type=Path, help="also write the numbers to this JSON file")


def _run_single_view_evaluate(args: argparse.Namespace) -> int:
    from .single_view.single_view_evaluation import run_single_view_evaluation

    return run_single_view_evaluation(args)


def _run_single_view_real_depth(args: argparse.Namespace) -> int:
    from .single_view.real_depth_evaluation import run_real_depth_evaluation

    return run_real_depth_evaluation(args)


def _add_atlas_diagnose(parser: argparse.ArgumentParser) -> None:
    _add_config(parser, ATLAS)
    parser.add_argument("--only", nargs="+", metavar="SCENE", help="these scenes of the config (default: all)")
    parser.add_argument("--every", type=int, default=1, help="read every n-th chunk of a cache")


def _run_atlas_diagnose(args: argparse.Namespace) -> int:
    from .atlas.atlas_config import load_atlas_config
    from .atlas.atlas_scenes import atlas_cache_dir
    from .atlas.feature_diagnostics import diagnose

    config = load_atlas_config(args.config)
    names = config.data.scene_names()
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown scenes {unknown}; this config has {names}")
    if args.every < 1:
        raise ValueError(f"--every must be at least 1, got {args.every}")
    print(diagnose({name: atlas_cache_dir(config, name) for name in names}, args.every, args.only))
    return 0


HANDLERS = {
    "extract": (partial(_add_extract, network=S4R), partial(_run_extract, network=S4R)),
    "fit": (partial(_add_fit, network=S4R), partial(_run_fit, network=S4R)),
    "export": (partial(_add_export, network=S4R), partial(_run_export, network=S4R)),
    "plot": (_add_plot, _run_plot),
    "atlas-extract": (partial(_add_extract, network=ATLAS), partial(_run_extract, network=ATLAS)),
    "atlas-fit": (partial(_add_fit, network=ATLAS), partial(_run_fit, network=ATLAS)),
    "atlas-export": (partial(_add_export, network=ATLAS), partial(_run_export, network=ATLAS)),
    "atlas-diagnose": (_add_atlas_diagnose, _run_atlas_diagnose),
    "single-view-extract": (partial(_add_extract, network=SINGLE_VIEW), partial(_run_extract, network=SINGLE_VIEW)),
    "single-view-fit": (partial(_add_fit, network=SINGLE_VIEW), partial(_run_fit, network=SINGLE_VIEW)),
    "single-view-export": (partial(_add_export, network=SINGLE_VIEW), partial(_run_export, network=SINGLE_VIEW)),
    "single-view-evaluate": (_add_single_view_evaluate, _run_single_view_evaluate),
    "single-view-real-depth": (_add_single_view_evaluate, _run_single_view_real_depth),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m semantic_recon_training", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name in EVALUATION_COMMANDS:
            if argv[:1] == [name]:  # import the evaluation only when it is the command being run
                _evaluation_module(name).add_arguments(command)
            continue
        HANDLERS[name][0](command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        if args.command in EVALUATION_COMMANDS:
            return int(_evaluation_module(args.command).run(args))
        return int(HANDLERS[args.command][1](args))
    except (ValueError, FileNotFoundError) as error:  # bad input: a message, not a traceback
        print(f"python -m semantic_recon_training {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
