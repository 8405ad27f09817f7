"""Self-supervised DINOv2 pretraining: losses, masking, crops, meta-architecture, loop."""
