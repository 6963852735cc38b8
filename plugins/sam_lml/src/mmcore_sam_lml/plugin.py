"""Registers mmcore-sam-lml's kinds and its `mmcore robustness` command; this module is the entry point."""
from __future__ import annotations

from typing import Any

import mmcore
from mmcore_sam_lml.config import SamLmlConfig
from mmcore_sam_lml.fusion import SamLmlFusionConfig, build_sam_lml_fusion
from mmcore_sam_lml.supervisor import build_sam_lml_supervisor


@mmcore.hookimpl
def mmcore_register_components(registry: mmcore.ComponentRegistry) -> None:
    registry.fusion("sam_lml", SamLmlFusionConfig, build_sam_lml_fusion, provides={"attention", "labels_in_fusion"},
                    help="SAM-LML attention stack: intra, directed inter, time and learnable-query pooling (Eq. 1-2, 16-25)")
    registry.attention_supervisor("sam_lml", SamLmlConfig, build_sam_lml_supervisor, requires={"attention"},
                                  help="SAM-LML ranking supervision of attention scores: noise, decomposition, "
                                       "variance, context, mixing (Eq. 3-15, 26-29)")


@mmcore.hookimpl
def mmcore_add_commands(subparsers: Any, parents: list[Any]) -> None:
    from mmcore_sam_lml.commands import add_robustness_command

    add_robustness_command(subparsers, parents)
