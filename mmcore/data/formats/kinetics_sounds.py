"""`kinetics_sounds`: Kinetics-Sounds (31 classes) as the OGM-GE / BalanceMM codes prepare it.

List files `my_train.txt` / `my_test.txt` (OGM-GE: `name,10,label_idx`; BalanceMM: `name ... label`,
space separated: the name is the first field, the integer label the last), Kaldi fbank audio
`<audio_dir>/<name>.npy` of shape (1024, 128) (AudioSet-normalised by the preparation script), and
1 fps frames `<frames_dir>/<name>/frame_0000t.jpg`, of which `frames` (3) are taken evenly. A
validation list (Valuate-and-Enhance ships one) is used when given; otherwise `val_fraction` of
each class of the training list is carved out with `split_seed`.
"""

from __future__ import annotations

import re
from pathlib import Path

from attrs import field, frozen
from attrs.validators import and_, ge, gt, in_, instance_of, lt, min_len

from mmcore.data.base import DataBundle
from mmcore.data.formats.clips import (
    carve,
    check_modalities,
    clip_bundle,
    existing_folder,
    image_size_field,
    keep_complete,
    list_lines,
    skip_missing_field,
)
from mmcore.data.formats.dependencies import require
from mmcore.data.formats.trusted_pickle import PickleTrust
from mmcore.errors import DataError
from mmcore.registry import BuildContext

FORMATS = ("fbank-npy", "fbank-pt")
MODALITIES = ("audio", "visual")
CITATION = (
    "R. Arandjelovic, A. Zisserman, 'Look, Listen and Learn', ICCV 2017 (Kinetics-Sounds); "
    "W. Kay et al., 'The Kinetics Human Action Video Dataset', arXiv:1705.06950, 2017."
)


@frozen(kw_only=True)
class KineticsSoundsConfig:
    root: str = field(validator=min_len(1), metadata={"help": "the Kinetics-Sounds folder (lists, frames, audio)"})
    format: str = field(default="fbank-npy", validator=in_(FORMATS), metadata={"help": " | ".join(FORMATS)})
    train_list: str = field(default="my_train.txt", metadata={"help": "training list, under root"})
    test_list: str = field(default="my_test.txt", metadata={"help": "test list, under root"})
    val_list: str = field(
        default="", metadata={"help": "validation list, under root; empty = carve val_fraction from train"}
    )
    audio_dir: str = field(
        default="audio", metadata={"help": "fbank files <audio_dir>/<name>.npy (or .pt), under root"}
    )
    frames_dir: str = field(default="visual", metadata={"help": "frame folders <frames_dir>/<name>/, under root"})
    num_classes: int = field(
        default=31, validator=and_(instance_of(int), ge(2)), metadata={"help": "classes (OGM-GE, BalanceMM: 31)"}
    )
    frames: int = field(default=3, validator=and_(instance_of(int), ge(1)), metadata={"help": "frames per clip"})
    image_size: int = image_size_field()
    audio_frames: int = field(
        default=1024, validator=and_(instance_of(int), ge(1)), metadata={"help": "fbank frames T per file"}
    )
    val_fraction: float = field(
        default=0.1,
        validator=and_(gt(0.0), lt(1.0)),
        metadata={"help": "fraction of each class carved for validation (no val_list)"},
    )
    split_seed: int = field(default=0, validator=instance_of(int), metadata={"help": "seed of the validation carve"})
    skip_missing: bool = skip_missing_field()


def read_name_label_list(path: Path, num_classes: int) -> tuple[list[str], list[int]]:
    """Names (first field) and integer labels (last field) of a comma- or space-separated list."""
    names, labels = [], []
    for number, line in list_lines(path):
        fields = [f for f in re.split(r"[,\s]+", line) if f]
        if len(fields) < 2 or not fields[-1].isdigit() or int(fields[-1]) >= num_classes:
            raise DataError(
                path, f"line {number}: {line!r} is not `name ... label` with a label in 0..{num_classes - 1}"
            )
        names.append(fields[0])
        labels.append(int(fields[-1]))
    return names, labels


def build_kinetics_sounds(config: KineticsSoundsConfig, ctx: BuildContext) -> DataBundle:
    check_modalities("kinetics_sounds", ctx.modalities, MODALITIES)
    require("kinetics_sounds", "PIL", "soundfile", "scipy")  # the formats extra: images and audio
    from mmcore.data.formats.audio import audio_reader
    from mmcore.data.formats.images import FrameStackReader

    root = existing_folder(Path(config.root).expanduser(), "$.data.root")
    names = {"train": config.train_list, "val": config.val_list, "test": config.test_list}
    lists = {split: root / name for split, name in names.items() if name}
    make = {
        "audio": lambda: audio_reader(
            config.format, existing_folder(root / config.audio_dir, "audio"), PickleTrust(), config.audio_frames
        ),
        "visual": lambda: FrameStackReader(
            existing_folder(root / config.frames_dir, "frames"), config.frames, config.image_size
        ),
    }
    readers = {m: make[m]() for m in ctx.modalities}
    complete = {
        split: keep_complete(*read_name_label_list(path, config.num_classes), readers, path, config.skip_missing)
        for split, path in lists.items()
    }
    if "val" not in complete:
        complete["train"], complete["val"] = carve(*complete["train"], config.val_fraction, config.split_seed)
    splits = {split: (*complete[split], split == "train") for split in ("train", "val", "test")}
    return clip_bundle(splits, readers, config.num_classes, CITATION)
