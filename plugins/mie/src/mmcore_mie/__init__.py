"""mmcore-mie: Modal-aware Interactive Enhancement (Jiang, Chi, Yang; arXiv 2407.04587 = IGM, IJCAI 2025)."""
__version__ = "0.1.0"
