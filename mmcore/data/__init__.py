"""Dataset kinds, corruption (missing modalities, noise) and resumable loaders (DESIGN.md section 5)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmcore.registry import ComponentRegistry


def register(registry: ComponentRegistry) -> None:
    """Register the built-in dataset kinds `mfeat` and `synthetic`."""
    from mmcore.data.mfeat import MfeatConfig, build_mfeat
    from mmcore.data.synthetic import SyntheticConfig, build_synthetic

    registry.dataset(
        "mfeat", MfeatConfig, build_mfeat,
        help="UCI Multiple Features digits: six real views (fac fou kar mor pix zer), 10 classes, shipped",
    )
    registry.dataset(
        "synthetic", SyntheticConfig, build_synthetic,
        help="M modalities with per-modality signal strength, optional (ragged) sequences and noise steps",
    )
