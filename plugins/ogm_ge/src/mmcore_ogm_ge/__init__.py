"""mmcore-ogm-ge: on-the-fly gradient modulation with generalization enhancement (OGM-GE)."""
__version__ = "0.1.0"
