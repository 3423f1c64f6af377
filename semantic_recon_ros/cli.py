"""`semantic-recon`: the command-line entry point; each subcommand lives in :mod:`.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module under semantic_recon_ros.commands exposing add_arguments(parser) and run(args) -> int
SUBCOMMANDS = {
    "demo": "demo",
    "map": "map",
    "make-bag": "make_bag",
    "play-bag": "play_bag",
    "params": "params",
    "synth": "synth",
    "launch": "launch",
    "single-view": "single_view",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semantic-recon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"semantic_recon_ros.commands.{module_name}")
        sub_parser = sub.add_parser(name, help=module.__doc__.strip().splitlines()[0], description=module.__doc__)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"semantic-recon {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
