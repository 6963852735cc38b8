"""`cmu_mosi` / `cmu_mosei`: sentiment pickles as MMSA and MulT publish them (specs/toolkit-anchors.md §c).

- format `mmsa`: `Processed/aligned_50.pkl` or `Processed/unaligned_50.pkl`; per split (train /
  valid / test) `text` (BERT, N x 50 x 768), `audio`, `vision`, `audio_lengths`, `vision_lengths`,
  `text_bert` (token ids, attention mask, segment ids) and `regression_labels`.
- format `mult`: `mosi_data.pkl`, `mosei_senti_data_noalign.pkl`, ...; per split `text` (GloVe
  300), `audio`, `vision` and `labels` (N x 1 x 1).

Masks: MMSA's text mask is `text_bert`'s attention mask; audio and vision share it in aligned
files and come from their lengths in unaligned ones (all-real where the key is absent); MulT
sequences are front-padded, so they are left-aligned (sequences.left_align). Labels are the sentiment scores in [-3, 3] (`task =
"regression"`, with the MMSA metric family in mmcore.metrics) or binarised: `binary_has0` (score
>= 0 is positive: MMSA's Has0, BalanceMM's MOSEI), `binary_non0` (score-0 rows dropped, > 0
positive: MMSA's Non0) or `binary_gt0` (> 0 positive, zero negative: MultiBench's labels). The
pickles load only when trusted (trusted_pickle.py); the digests the MMSA README publishes for its
files are trusted already.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from attrs import field, frozen
from attrs.validators import in_, min_len

from mmcore.data.base import DataBundle
from mmcore.data.formats.clips import check_modalities
from mmcore.data.formats.sequences import (
    MODALITIES,
    array_of,
    check_feature_dims,
    feature_sequences,
    full_masks,
    left_align,
    lengths_mask,
    scores_of,
    sequence_bundle,
    split_tables,
)
from mmcore.data.formats.trusted_pickle import PickleTrust, load_trusted_pickle, sha256_field, trusted_field
from mmcore.registry import BuildContext

FORMATS = ("mmsa", "mult")
TASKS = ("regression", "binary_has0", "binary_non0", "binary_gt0")
#: SHA-256 digests published in the MMSA README (thuiar/MMSA @a94e65d, "SHA-256 for feature files")
MMSA_PUBLISHED_SHA256 = {
    "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524": "MOSI/Processed/unaligned_50.pkl",
    "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9": "MOSI/Processed/aligned_50.pkl",
    "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f": "MOSEI/Processed/unaligned_50.pkl",
    "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791": "MOSEI/Processed/aligned_50.pkl",
    "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f": "SIMS/Processed/unaligned_39.pkl",
}
CITATIONS = {
    "cmu_mosi": "A. Zadeh, R. Zellers, E. Pincus, L.-P. Morency, 'MOSI: Multimodal Corpus of Sentiment Intensity "
    "and Subjectivity Analysis in Online Opinion Videos', IEEE Intelligent Systems 31(6):82-88, 2016.",
    "cmu_mosei": "A. Zadeh, P. P. Liang, S. Poria, E. Cambria, L.-P. Morency, 'Multimodal Language Analysis in the "
    "Wild: CMU-MOSEI Dataset and Interpretable Dynamic Fusion Graph', ACL 2018.",
}


@frozen(kw_only=True)
class SentimentConfig:
    path: str = field(
        validator=min_len(1), metadata={"help": "the pickle file (MMSA Processed/*.pkl or a MulT *_data*.pkl)"}
    )
    format: str = field(
        default="mmsa",
        validator=in_(FORMATS),
        metadata={"help": "mmsa (MMSA Processed/*.pkl) | mult (MulT *_data*.pkl)"},
    )
    task: str = field(
        default="regression",
        validator=in_(TASKS),
        metadata={
            "help": "regression (scores in [-3, 3]) | binary_has0 (>= 0 positive) | binary_non0 (zeros dropped, "
            "> 0 positive) | binary_gt0 (> 0 positive, zeros negative)"
        },
    )
    trusted: bool = trusted_field()
    sha256: tuple[str, ...] = sha256_field()


def bert_mask(path: Path, table: Mapping[str, Any], split: str) -> np.ndarray | None:
    """Row 1 of MMSA's `text_bert` (token ids, attention mask, segment ids): bool [N, T], or None."""
    if "text_bert" not in table:
        return None
    return array_of(path, table, split, "text_bert", 3)[:, 1, :] > 0


def mmsa_split(
    path: Path, table: Mapping[str, Any], split: str, modalities: tuple[str, ...]
) -> tuple[dict, dict, np.ndarray]:
    features = feature_sequences(path, table, split, modalities)
    masks = full_masks(features)
    text_mask = bert_mask(path, table, split)
    # aligned files (one length for every modality) are word-aligned: the text's padding is everyone's,
    # and MMSA reads the lengths only for unaligned files
    aligned = len({np.shape(table[m])[1] for m in MODALITIES if m in table and np.ndim(table[m]) == 3}) == 1
    for m in features:
        if text_mask is not None and (m == "text" or aligned) and text_mask.shape == masks[m].shape:
            masks[m] = text_mask
        elif not aligned and f"{m}_lengths" in table:
            masks[m] = lengths_mask(path, table[f"{m}_lengths"], features[m].shape[1], f"{split}/{m}_lengths")
    count = next(iter(features.values())).shape[0]
    return features, masks, scores_of(path, table, split, "regression_labels", count)


def mult_split(
    path: Path, table: Mapping[str, Any], split: str, modalities: tuple[str, ...]
) -> tuple[dict, dict, np.ndarray]:
    features, masks = left_align(feature_sequences(path, table, split, modalities))
    return features, masks, scores_of(path, table, split, "labels", next(iter(features.values())).shape[0])


def binarised(features: dict, masks: dict, scores: np.ndarray, task: str) -> tuple[dict, dict, np.ndarray]:
    if task == "regression":
        return features, masks, scores
    if task == "binary_has0":
        return features, masks, (scores >= 0).astype(np.float32)
    if task == "binary_gt0":
        return features, masks, (scores > 0).astype(np.float32)
    keep = scores != 0
    return (
        {m: a[keep] for m, a in features.items()},
        {m: a[keep] for m, a in masks.items()},
        (scores[keep] > 0).astype(np.float32),
    )


def build_sentiment(kind: str, config: SentimentConfig, ctx: BuildContext) -> DataBundle:
    modalities = tuple(ctx.modalities)
    check_modalities(kind, modalities, MODALITIES)
    path = Path(config.path).expanduser()
    trust = PickleTrust(config.trusted, frozenset(config.sha256) | frozenset(MMSA_PUBLISHED_SHA256))
    tables = split_tables(path, load_trusted_pickle(path, trust))
    read_split = mmsa_split if config.format == "mmsa" else mult_split
    splits = {
        name: binarised(*read_split(path, table, name, modalities), config.task) for name, table in tables.items()
    }
    check_feature_dims(path, {name: split[0] for name, split in splits.items()})
    task = "regression" if config.task == "regression" else "binary"
    return sequence_bundle(modalities, splits, task, CITATIONS[kind], kind)


def build_cmu_mosi(config: SentimentConfig, ctx: BuildContext) -> DataBundle:
    return build_sentiment("cmu_mosi", config, ctx)


def build_cmu_mosei(config: SentimentConfig, ctx: BuildContext) -> DataBundle:
    return build_sentiment("cmu_mosei", config, ctx)
