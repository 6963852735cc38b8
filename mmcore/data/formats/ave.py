"""`ave`: AVE (Audio-Visual Event, 28 classes) as the PMR / DI-MML / ReconBoost codes prepare it.

The official split files `trainSet.txt` / `valSet.txt` / `testSet.txt` (3,339 / 402 / 402 lines
`Category&VideoID&Quality&Start&End`), event-segment frames `Image-01-FPS-SE/<VideoID>/*.jpg`
(`frames` of them taken evenly: PMR and DI-MML 4, ReconBoost 3) and event-segment audio:

| format        | audio                                                  | default folder  |
|---------------|--------------------------------------------------------|-----------------|
| `pmr-pkl1004` | B: pickled 257 x 1004 spectrograms (PMR, DI-MML, ReconBoost) | `Audio-1004-SE` |
| `fbank-npy`   | C: Kaldi fbank (T, 128) .npy (MLA)                     | `audio`         |
| `fbank-pt`    | C: the same saved by torch                             | `audio`         |

Labels: `labels` in index order when given; otherwise the categories in order of first appearance
in the test list, as PMR numbers them. A video listed twice in one split is kept once (PMR).
"""

from __future__ import annotations

from pathlib import Path

from attrs import field, frozen
from attrs.validators import and_, deep_iterable, ge, in_, instance_of, min_len

from mmcore.data.base import DataBundle
from mmcore.data.formats.clips import (
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

FORMATS = ("pmr-pkl1004", "fbank-npy", "fbank-pt")
DEFAULT_AUDIO_DIR = {"pmr-pkl1004": "Audio-1004-SE", "fbank-npy": "audio", "fbank-pt": "audio"}
MODALITIES = ("audio", "visual")
HEADER = "Category"  # Annotations.txt starts with a header line; the split files do not, but may
CITATION = (
    "Y. Tian, J. Shi, B. Li, Z. Duan, C. Xu, 'Audio-Visual Event Localization in Unconstrained Videos', ECCV 2018."
)


@frozen(kw_only=True)
class AVEConfig:
    root: str = field(validator=min_len(1), metadata={"help": "the AVE folder (split files, frames, audio)"})
    format: str = field(default="pmr-pkl1004", validator=in_(FORMATS), metadata={"help": " | ".join(FORMATS)})
    train_list: str = field(default="trainSet.txt", metadata={"help": "training split file, under root"})
    val_list: str = field(default="valSet.txt", metadata={"help": "validation split file, under root"})
    test_list: str = field(default="testSet.txt", metadata={"help": "test split file, under root"})
    frames_dir: str = field(
        default="Image-01-FPS-SE", metadata={"help": "frame folders <frames_dir>/<VideoID>/, under root"}
    )
    audio_dir: str = field(
        default="",
        metadata={"help": "audio files <audio_dir>/<VideoID>.<ext>, under root; empty = the format's default"},
    )
    labels: tuple[str, ...] = field(
        default=(),
        converter=tuple,
        validator=deep_iterable(instance_of(str)),
        metadata={"help": "category names in index order; empty = order of first appearance in the test list (PMR)"},
    )
    frames: int = field(
        default=4,
        validator=and_(instance_of(int), ge(1)),
        metadata={"help": "frames per clip (PMR, DI-MML 4; ReconBoost 3)"},
    )
    image_size: int = image_size_field()
    audio_frames: int = field(
        default=0,
        validator=and_(instance_of(int), ge(0)),
        metadata={"help": "fbank formats: frames T per file; 0 = read from the first training file"},
    )
    skip_missing: bool = skip_missing_field("videos", " (PMR does)")
    trusted: bool = trusted_field()
    sha256: tuple[str, ...] = sha256_field()


def read_split_file(path: Path) -> list[tuple[str, str]]:
    """(category, video id) per line, each video once, in file order."""
    rows, seen = [], set()
    for number, line in list_lines(path):
        fields = line.split("&")
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise DataError(path, f"line {number}: {line!r} is not `Category&VideoID&Quality&Start&End`")
        if fields[0] == HEADER or fields[1] in seen:
            continue
        seen.add(fields[1])
        rows.append((fields[0], fields[1]))
    return rows


def label_indices(rows: list[tuple[str, str]], labels: list[str], path: Path) -> tuple[list[str], list[int]]:
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({c for c, _ in rows if c not in index})
    if unknown:
        raise DataError(path, f"categories {unknown} are not in $.data.labels")
    return [video for _, video in rows], [index[c] for c, _ in rows]


def build_ave(config: AVEConfig, ctx: BuildContext) -> DataBundle:
    check_modalities("ave", ctx.modalities, MODALITIES)
    require("ave", "PIL", "soundfile", "scipy")  # the formats extra: images and audio
    from mmcore.data.formats.audio import audio_reader
    from mmcore.data.formats.images import FrameStackReader

    root = existing_folder(Path(config.root).expanduser(), "$.data.root")
    lists = {split: root / getattr(config, f"{split}_list") for split in ("train", "val", "test")}
    rows = {split: read_split_file(path) for split, path in lists.items()}
    labels = list(config.labels) or list(dict.fromkeys(category for category, _ in rows["test"]))
    first_clip = rows["train"][0][1] if rows["train"] else None
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
    splits = {}
    for split, path in lists.items():
        clips, targets = keep_complete(*label_indices(rows[split], labels, path), readers, path, config.skip_missing)
        splits[split] = (clips, targets, split == "train")
    return clip_bundle(splits, readers, len(labels), CITATION)
