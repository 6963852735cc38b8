"""mmcore-modality-valuation: sample-level and modality-level modality valuation (Wei et al., CVPR 2024)."""
__version__ = "0.1.0"
