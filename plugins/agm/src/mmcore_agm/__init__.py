"""mmcore-agm: adaptive gradient modulation (AGM) through Shapley-decomposed logits."""
__version__ = "0.1.0"
