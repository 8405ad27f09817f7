"""Frozen-backbone evaluators: probes, segmentation, metadata, correspondence, attention."""
