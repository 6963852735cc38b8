"""`ur_funny` / `mustard`: UR-FUNNY (humor) and MUStARD (sarcasm) as MultiBench publishes them.

`humor.pkl` / `sarcasm.pkl` (format `multibench-pkl`): a dict of splits train / valid / test, each
with `text` (GloVe 300), `audio` (COVAREP 81), `vision` (OpenFace 371) as (N, T, D) sequences
zero-padded at the front, and `labels`. As MultiBench's affect loader: samples whose text is all
zero are dropped (`drop_empty_text`), -inf audio values become 0, the sequences start where the text
starts (sequences.left_align) and are cut or padded to `max_seq_len` steps, with a mask marking the
real ones. The task is binary: humor is positive for a non-zero label (MultiBench keeps the raw
0/1), sarcasm for a label > 0. The pickles load only when trusted (trusted_pickle.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from attrs import field, frozen
from attrs.validators import and_, ge, in_, instance_of, min_len

from mmcore.data.base import DataBundle
from mmcore.data.formats.clips import check_modalities
from mmcore.data.formats.sequences import (
    MODALITIES,
    check_feature_dims,
    feature_sequences,
    left_align,
    scores_of,
    sequence_bundle,
    split_tables,
)
from mmcore.data.formats.trusted_pickle import PickleTrust, load_trusted_pickle, sha256_field, trusted_field
from mmcore.registry import BuildContext

FORMATS = ("multibench-pkl",)
CITATIONS = {
    "ur_funny": "M. K. Hasan, W. Rahman, A. Zadeh, J. Zhong, M. I. Tanveer, L.-P. Morency, M. E. Hoque, 'UR-FUNNY: "
    "A Multimodal Language Dataset for Understanding Humor', EMNLP-IJCNLP 2019; features as in P. P. Liang et al., "
    "'MultiBench', NeurIPS 2021 Datasets and Benchmarks.",
    "mustard": "S. Castro, D. Hazarika, V. Perez-Rosas, R. Zimmermann, R. Mihalcea, S. Poria, 'Towards Multimodal "
    "Sarcasm Detection (An _Obviously_ Perfect Paper)', ACL 2019; features as in P. P. Liang et al., 'MultiBench', "
    "NeurIPS 2021 Datasets and Benchmarks.",
}


def _humor_positive(labels: np.ndarray) -> np.ndarray:
    return labels != 0


def _sarcasm_positive(labels: np.ndarray) -> np.ndarray:
    return labels > 0


POSITIVE = {"ur_funny": _humor_positive, "mustard": _sarcasm_positive}


@frozen(kw_only=True)
class MultiBenchAffectConfig:
    path: str = field(validator=min_len(1), metadata={"help": "the MultiBench pickle (humor.pkl or sarcasm.pkl)"})
    format: str = field(default="multibench-pkl", validator=in_(FORMATS), metadata={"help": " | ".join(FORMATS)})
    max_seq_len: int = field(
        default=50,
        validator=and_(instance_of(int), ge(1)),
        metadata={"help": "steps kept per sequence (MultiBench default 50; its humor example 40)"},
    )
    drop_empty_text: bool = field(
        default=True,
        validator=instance_of(bool),
        metadata={"help": "drop samples whose text is all zero (MultiBench's drop_entry)"},
    )
    trusted: bool = trusted_field()
    sha256: tuple[str, ...] = sha256_field()


def multibench_split(
    path: Path, table: dict, split: str, kind: str, config: MultiBenchAffectConfig
) -> tuple[dict, dict, np.ndarray]:
    features = feature_sequences(path, table, split, MODALITIES)
    labels = POSITIVE[kind](scores_of(path, table, split, "labels", features["text"].shape[0])).astype(np.float32)
    if config.drop_empty_text:
        keep = np.any(features["text"] != 0, axis=(1, 2))
        features, labels = {m: a[keep] for m, a in features.items()}, labels[keep]
    features, masks = left_align(features)
    cut = config.max_seq_len
    features = {m: _pad_steps(a[:, :cut], cut) for m, a in features.items()}
    masks = {m: _pad_steps(a[:, :cut], cut) for m, a in masks.items()}
    return features, masks, labels


def _pad_steps(values: np.ndarray, steps: int) -> np.ndarray:
    """Zero (False) steps appended up to `steps`."""
    missing = steps - values.shape[1]
    if missing <= 0:
        return values
    return np.pad(values, [(0, 0), (0, missing)] + [(0, 0)] * (values.ndim - 2))


def build_multibench_affect(kind: str, config: MultiBenchAffectConfig, ctx: BuildContext) -> DataBundle:
    modalities = tuple(ctx.modalities)
    check_modalities(kind, modalities, MODALITIES)
    path = Path(config.path).expanduser()
    tables = split_tables(path, load_trusted_pickle(path, PickleTrust(config.trusted, frozenset(config.sha256))))
    splits = {name: multibench_split(path, table, name, kind, config) for name, table in tables.items()}
    check_feature_dims(path, {name: features for name, (features, _, _) in splits.items()})
    return sequence_bundle(modalities, splits, "binary", CITATIONS[kind], kind)


def build_ur_funny(config: MultiBenchAffectConfig, ctx: BuildContext) -> DataBundle:
    return build_multibench_affect("ur_funny", config, ctx)


def build_mustard(config: MultiBenchAffectConfig, ctx: BuildContext) -> DataBundle:
    return build_multibench_affect("mustard", config, ctx)
