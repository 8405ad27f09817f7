"""Data: phantoms, dataset folders, image IO, splits and transforms."""
