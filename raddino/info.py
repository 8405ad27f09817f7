"""Print versions, available devices and the backbone configs this install knows."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from raddino.models.backbone import BACKBONE_CONFIGS
    from raddino.utils import versions

    info = {
        "versions": versions(),
        "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "backbones": sorted(BACKBONE_CONFIGS),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return 0
