"""mmcore-pase: PaSE (He et al., AAAI 2026) as mmcore kinds.

- fusion `pase`: prototype-gated fusion with per-modality class prototypes (PCL) and entropic-OT
  alignment of the prototype sets (CAL), both as auxiliary losses;
- balancer `pase_sgm`: Shapley-based gradient modulation (SGM), switched on by a validation plateau
  (dual-phase training).
"""
__version__ = "0.1.0"
