"""Tiny randomly initialised models saved the way the published weights ship, for tests."""

from __future__ import annotations

from pathlib import Path


def tiny_dinov2_folder(folder: Path) -> Path:
    """A Hugging Face DINOv2 folder (config.json + model.safetensors), the layout `hf download`
    writes for microsoft/rad-dino: 3 blocks of width 32, patch 14, 56 px, seeded weights."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=56,
        patch_size=14,
    )
    Dinov2Model(config).save_pretrained(folder)
    return folder
