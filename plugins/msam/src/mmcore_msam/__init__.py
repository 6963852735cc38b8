"""mmcore-msam: sharpness-aware minimisation (`sam`) and Modality-Aware SAM (`msam`) for mmcore."""
__version__ = "0.1.0"
