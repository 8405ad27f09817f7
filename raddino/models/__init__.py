"""Models: the DINOv2-layout ViT backbone, weight loaders, encoder registry."""
