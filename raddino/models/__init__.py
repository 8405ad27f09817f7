"""Models: the DINOv2-layout ViT backbone, weight loaders, encoder registry."""

from raddino.models.weights import load_backbone  # the README's entry point

__all__ = ["load_backbone"]
