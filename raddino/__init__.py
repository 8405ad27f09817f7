"""raddino: reproduce, explain and extend RAD-DINO (Pérez-García et al., arXiv 2401.10815)."""

__version__ = "0.1.0"
