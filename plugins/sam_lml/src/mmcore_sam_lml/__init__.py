"""mmcore-sam-lml: the SAM-LML fusion, its attention supervisor and the robustness protocols
(Mai, Han, Hu: "Supervised Attention Mechanism for Low-quality Multimodal Data", EMNLP 2025)."""
__version__ = "0.1.0"
