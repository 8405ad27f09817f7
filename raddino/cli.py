"""`raddino` command line: one subcommand per capability, each a thin wrapper over the library.

Each subcommand lives in its own module that defines `add_arguments(parser)` and `run(args) -> int`;
modules are imported lazily so that `raddino --help` stays fast and one broken extra cannot break
the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules define add_arguments(parser) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "embed": ("raddino.embed", "Embed images with a frozen backbone into a safetensors file."),
    "phantom": ("raddino.data.phantom_cli", "Write a dataset folder of chest X-ray phantoms."),
    "phantom-sheet": ("raddino.data.phantom_sheet", "Draw a labelled contact sheet of phantoms."),
    "pretrain": (
        "raddino.ssl.pretrain_cli",
        "DINOv2 (continual) pretraining, resumable, torchrun-ready.",
    ),
    "release": (
        "raddino.ssl.release_cli",
        "Package a finished run as an fp16 release checkpoint with a probed manifest.",
    ),
    "info": ("raddino.info", "Print versions, devices and the available backbone configs."),
    "index": ("raddino.data.index_cli", "Index a real dataset in place as a dataset folder."),
    "probe": ("raddino.eval.probe_cli", "Linear probes on frozen features: AUPRC over seeds."),
    "metadata": ("raddino.eval.metadata_cli", "Predict sex/age/weight/BMI bins from features."),
    "segment": (
        "raddino.eval.segment_cli",
        "Segmentation heads on a frozen encoder (linear/ViTDet/UPerNet/U-Net), Dice.",
    ),
    "correspond": (
        "raddino.eval.correspond_cli",
        "Patch correspondence: landmark transfer error between subjects.",
    ),
    "book": ("raddino.book_cli", "Execute the book's notebooks under a profile; build the HTML."),
}


def build_parser() -> argparse.ArgumentParser:
    from raddino import __version__

    parser = argparse.ArgumentParser(
        prog="raddino",
        description="Reproduce, explain and extend RAD-DINO on chest X-rays (or phantoms).",
    )
    parser.add_argument("--version", action="version", version=f"raddino {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError) as err:
        # Bad input is reported in one line naming the cause, not a traceback.
        print(f"raddino {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
