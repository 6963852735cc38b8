"""`crema_d`: CREMA-D as the OGM-GE code prepares it (specs/toolkit-anchors.md §c, CREMA-D).

The OGM-GE split files (`train.csv`, `test.csv`: lines `clip_id,LABEL`, 6,698 / 744 clips), frames
in `Image-01-FPS/<clip_id>/*.jpg`, and one of the audio variants, chosen by `format`:

| format        | audio                                                   | default folder |
|---------------|---------------------------------------------------------|----------------|
| `ogm-wav`     | A: wav -> log STFT [1, 257, 188], computed on the fly   | `AudioWAV`     |
| `pmr-pkl1004` | B: pickled 257 x 1004 spectrograms (PMR, DI-MML)        | `Audio-1004`   |
| `fbank-pt`    | C: Kaldi fbank (T, 128) saved by torch (BalanceMM, MMPareto) | `audio`   |
| `fbank-npy`   | C: the same as .npy (MLA)                               | `audio`        |

The label order is configuration (`labels`; repos disagree, so checkpoints only transfer with the
same order). There is no official validation split: `val_fraction` of each class of the training
list is carved out with `split_seed`, and validation frames get the evaluation transform.
"""

from __future__ import annotations

from pathlib import Path

from attrs import field, frozen
from attrs.validators import and_, deep_iterable, ge, gt, in_, instance_of, lt, min_len

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
from mmcore.data.formats.trusted_pickle import PickleTrust, sha256_field, trusted_field
from mmcore.errors import DataError
from mmcore.registry import BuildContext

FORMATS = ("ogm-wav", "pmr-pkl1004", "fbank-pt", "fbank-npy")
DEFAULT_AUDIO_DIR = {"ogm-wav": "AudioWAV", "pmr-pkl1004": "Audio-1004", "fbank-pt": "audio", "fbank-npy": "audio"}
OGM_GE_LABELS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
MODALITIES = ("audio", "visual")
CITATION = (
    "H. Cao, D. G. Cooper, M. K. Keutmann, R. C. Gur, A. Nenkova, R. Verma, 'CREMA-D: Crowd-sourced "
    "Emotional Multimodal Actors Dataset', IEEE Transactions on Affective Computing 5(4):377-390, 2014."
)


def _distinct(instance: object, attribute: object, labels: tuple[str, ...]) -> None:
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {list(labels)}")


@frozen(kw_only=True)
class CremaDConfig:
    root: str = field(validator=min_len(1), metadata={"help": "the CREMA-D folder (lists, frames, audio)"})
    format: str = field(default="ogm-wav", validator=in_(FORMATS), metadata={"help": " | ".join(FORMATS)})
    train_list: str = field(default="train.csv", metadata={"help": "training list (`clip_id,LABEL` lines), under root"})
    test_list: str = field(default="test.csv", metadata={"help": "test list, under root"})
    frames_dir: str = field(
        default="Image-01-FPS", metadata={"help": "frame folders <frames_dir>/<clip_id>/, under root"}
    )
    audio_dir: str = field(
        default="",
        metadata={"help": "audio files <audio_dir>/<clip_id>.<ext>, under root; empty = the format's default"},
    )
    labels: tuple[str, ...] = field(
        default=OGM_GE_LABELS,
        converter=tuple,
        validator=and_(min_len(2), deep_iterable(instance_of(str)), _distinct),
        metadata={"help": "class names in index order (default: OGM-GE's; MMPareto sorts them)"},
    )
    frames: int = field(
        default=1, validator=and_(instance_of(int), ge(1)), metadata={"help": "frames per clip (OGM-GE 1; PMR, MLA 3)"}
    )
    image_size: int = image_size_field()
    audio_frames: int = field(
        default=0,
        validator=and_(instance_of(int), ge(0)),
        metadata={"help": "fbank formats: frames T per file; 0 = read from the first training file"},
    )
    val_fraction: float = field(
        default=0.1,
        validator=and_(gt(0.0), lt(1.0)),
        metadata={"help": "fraction of each class of the training list held out for validation"},
    )
    split_seed: int = field(default=0, validator=instance_of(int), metadata={"help": "seed of the validation carve"})
    skip_missing: bool = skip_missing_field(note=" (the official loaders do)")
    trusted: bool = trusted_field()
    sha256: tuple[str, ...] = sha256_field()


def read_clip_list(path: Path, labels: tuple[str, ...]) -> tuple[list[str], list[int]]:
    """Clip ids and label indices of a `clip_id,LABEL` list."""
    index = {name: i for i, name in enumerate(labels)}
    clips, targets = [], []
    for number, line in list_lines(path):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(
                path, f"line {number}: {line!r} is not `clip_id,LABEL` with LABEL in $.data.labels {list(labels)}"
            )
        clips.append(fields[0])
        targets.append(index[fields[1]])
    return clips, targets


def build_crema_d(config: CremaDConfig, ctx: BuildContext) -> DataBundle:
    check_modalities("crema_d", ctx.modalities, MODALITIES)
    require("crema_d", "PIL", "soundfile", "scipy")
    from mmcore.data.formats.audio import audio_reader
    from mmcore.data.formats.images import FrameStackReader

    root = existing_folder(Path(config.root).expanduser(), "$.data.root")
    lists = {name: root / getattr(config, f"{name}_list") for name in ("train", "test")}
    listed = {name: read_clip_list(path, config.labels) for name, path in lists.items()}
    first_clip = listed["train"][0][0] if listed["train"][0] else None
    make = {
        "audio": lambda: audio_reader(
            config.format,
            existing_folder(root / (config.audio_dir or DEFAULT_AUDIO_DIR[config.format]), "audio"),
            PickleTrust(config.trusted, frozenset(config.sha256)),
            config.audio_frames,
            first_clip,
        ),
        "visual": lambda: FrameStackReader(
            existing_folder(root / config.frames_dir, "frames"), config.frames, config.image_size
        ),
    }
    readers = {m: make[m]() for m in ctx.modalities}
    complete = {name: keep_complete(*listed[name], readers, lists[name], config.skip_missing) for name in lists}
    train, val = carve(*complete["train"], config.val_fraction, config.split_seed)
    splits = {"train": (*train, True), "val": (*val, False), "test": (*complete["test"], False)}
    return clip_bundle(splits, readers, len(config.labels), CITATION)
