"""crema_d, kinetics_sounds and ave: tiny fixture folders in each layout, loaded through the config
path; shapes, labels, split sizes and the validation policy of each dataset."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from format_helpers import fixtures, load_bundle, whole

from mmcore.data.formats.crema_d import OGM_GE_LABELS


def crema_table(root, **keys):
    return {"kind": "crema_d", "modalities": ["audio", "visual"], "root": str(root), "image_size": 32, **keys}


def test_crema_d_wav_frames_labels_and_carved_validation(tmp_path):
    listed = fixtures().write_crema_d(tmp_path, train_per_class=5, test_per_class=1, frames=2)
    bundle = load_bundle(tmp_path, crema_table(tmp_path, frames=2, val_fraction=0.2))
    info = bundle.info
    assert info.input_shapes == {"audio": (1, 257, 188), "visual": (2, 3, 32, 32)}
    assert (info.task, info.num_outputs, info.modalities) == ("classification", 6, ("audio", "visual"))
    assert [len(bundle.splits[s]) for s in ("train", "val", "test")] == [24, 6, 6]
    # validation: round(5 * 0.2) = 1 clip of every class, carved from the training list
    train, val, test = (bundle.splits[s] for s in ("train", "val", "test"))
    assert torch.bincount(val.labels, minlength=6).tolist() == [1] * 6
    assert sorted(train.clips + val.clips) == sorted(c for c, _ in listed["train"])
    assert test.clips == [c for c, _ in listed["test"]]
    index = {c: OGM_GE_LABELS.index(y) for c, y in listed["train"] + listed["test"]}
    assert [index[c] for c in train.clips] == train.labels.tolist()
    loaded = whole(test)  # what the loader carries: 3-s clips and uint8 pixels
    assert loaded.inputs["audio"].shape == (6, 1, 3 * 22050) and loaded.inputs["visual"].dtype == torch.uint8
    batch = bundle.prepare(loaded)  # what the model gets, once the batch is on the device
    assert batch.inputs["audio"].shape == (6, 1, 257, 188) and batch.inputs["visual"].shape == (6, 2, 3, 32, 32)
    assert batch.label.tolist() == list(range(6)) and batch.present.all()
    assert torch.isfinite(batch.inputs["audio"]).all()


def test_crema_d_split_is_seeded_and_label_order_is_configuration(tmp_path):
    fixtures().write_crema_d(tmp_path, train_per_class=4, test_per_class=1, frames=1)
    runs = []
    for seed, labels in ((0, None), (0, None), (1, None), (0, sorted(OGM_GE_LABELS))):
        keys = {"split_seed": seed, "val_fraction": 0.25, **({"labels": labels} if labels else {})}
        runs.append(load_bundle(tmp_path, crema_table(tmp_path, modalities=["visual"], **keys)))
    assert runs[0].splits["val"].clips == runs[1].splits["val"].clips
    assert runs[0].splits["val"].clips != runs[2].splits["val"].clips
    sorted_labels = (
        runs[3].splits["test"].labels.tolist()
    )  # test rows NEU HAP SAD FEA DIS ANG, sorted order ANG DIS FEA HAP NEU SAD
    assert sorted_labels == [4, 3, 5, 2, 1, 0]
    assert runs[3].info.input_shapes == {"visual": (1, 3, 32, 32)}


def test_training_frames_are_augmented_and_evaluation_frames_fixed(tmp_path):
    fixtures().write_crema_d(tmp_path, train_per_class=3, test_per_class=1, frames=3, frame_size=(64, 48))
    bundle = load_bundle(tmp_path, crema_table(tmp_path, modalities=["visual"], frames=3, val_fraction=0.34))
    torch.manual_seed(0)
    train, val = bundle.splits["train"], bundle.splits["val"]
    assert not torch.equal(train[0]["inputs"]["visual"], train[0]["inputs"]["visual"])
    assert torch.equal(val[0]["inputs"]["visual"], val[0]["inputs"]["visual"])
    frames = val[0]["inputs"]["visual"]
    assert frames.shape == (3, 3, 32, 32) and frames.dtype == torch.uint8  # pixels; the device normalises
    normalised = bundle.on_device["visual"](frames)
    assert normalised.dtype == torch.float32 and -2.2 < normalised.min() and normalised.max() < 2.7
    assert "audio" not in bundle.on_device


@pytest.mark.parametrize(
    "audio_format, shape", [("pmr-pkl1004", (1, 257, 1004)), ("fbank-pt", (1, 48, 128)), ("fbank-npy", (1, 48, 128))]
)
def test_crema_d_precomputed_audio_variants(tmp_path, audio_format, shape):
    fixtures().write_crema_d(
        tmp_path, train_per_class=2, test_per_class=1, audio_format=audio_format, frames=1, fbank_frames=48
    )
    bundle = load_bundle(
        tmp_path, crema_table(tmp_path, modalities=["audio"], format=audio_format, trusted=True, val_fraction=0.5)
    )
    assert bundle.info.input_shapes == {"audio": shape}
    clip = bundle.splits["test"].clips[0]
    folder, suffix, _ = fixtures().AUDIO_FILE[audio_format]
    path = tmp_path / folder / f"{clip}{suffix}"
    on_disk = (
        np.load(path)
        if suffix == ".npy"
        else (torch.load(path).numpy() if suffix == ".pt" else np.load(path, allow_pickle=True))
    )
    assert torch.equal(bundle.splits["test"][0]["inputs"]["audio"][0], torch.from_numpy(on_disk))


def test_kinetics_sounds_lists_frames_and_validation(tmp_path):
    write = fixtures().write_kinetics_sounds
    listed = write(tmp_path / "ogm", 2, 1, num_classes=31, frames=4, fbank_frames=1024)
    bundle = load_bundle(
        tmp_path / "ogm",
        {
            "kind": "kinetics_sounds",
            "modalities": ["visual", "audio"],
            "root": str(tmp_path / "ogm"),
            "image_size": 16,
            "val_fraction": 0.5,
        },
    )
    assert bundle.info.input_shapes == {"visual": (3, 3, 16, 16), "audio": (1, 1024, 128)}
    assert bundle.info.num_outputs == 31 and bundle.info.modalities == ("visual", "audio")
    assert [len(bundle.splits[s]) for s in ("train", "val", "test")] == [31, 31, 31]
    assert bundle.splits["test"].labels.tolist() == [y for _, y in listed["test"]]
    # a validation list, when given, is used as is; BalanceMM's space-separated lists read the same
    spaced = write(tmp_path / "bmm", 1, 1, num_classes=3, frames=2, fbank_frames=8, list_style="balancemm")
    (tmp_path / "bmm" / "my_val.txt").write_text("".join(f"{n} {y}\n" for n, y in spaced["test"]))
    bundle = load_bundle(
        tmp_path / "bmm",
        {
            "kind": "kinetics_sounds",
            "modalities": ["audio"],
            "root": str(tmp_path / "bmm"),
            "num_classes": 3,
            "audio_frames": 8,
            "val_list": "my_val.txt",
        },
    )
    assert bundle.splits["val"].clips == bundle.splits["test"].clips == [n for n, _ in spaced["test"]]
    assert len(bundle.splits["train"]) == 3


def test_frames_are_taken_evenly_in_natural_order(tmp_path):
    # frame_00001 .. frame_000010 sort wrongly as text; the reader orders them by number
    colors = [(25 * t, 0, 0) for t in range(10)]
    fixtures().write_frames(tmp_path / "clip", 10, (16, 16), np.random.default_rng(0), "frame_0000{}.jpg", colors)
    from mmcore.data.formats.images import FrameStackReader, pick_frames

    assert pick_frames(10, 3, train=False) == [1, 4, 8]
    frames = FrameStackReader(tmp_path, 3, 16)("clip", train=False)
    assert torch.allclose(frames[:, 0].float().mean(dim=(1, 2)), torch.tensor([25.0, 100.0, 200.0]), atol=3)
    torch.manual_seed(0)
    drawn = [pick_frames(10, 3, train=True) for _ in range(50)]
    assert all(0 <= a <= 2 and 3 <= b <= 5 and 6 <= c <= 9 for a, b, c in drawn) and len(set(map(tuple, drawn))) > 5
    assert pick_frames(2, 3, train=False) == [0, 0, 1]  # fewer frames than asked: frames repeat


def test_ave_official_splits_labels_and_digest_allow_list(tmp_path):
    listed = fixtures().write_ave(tmp_path, {"train": 2, "val": 1, "test": 1}, frames=4)
    with open(tmp_path / "trainSet.txt", "a") as file:  # a video listed twice is kept once
        file.write(f"Dog&{listed['train'][0][1]}&good&0&10\n")
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((tmp_path / "Audio-1004-SE").iterdir())]
    table = {
        "kind": "ave",
        "modalities": ["audio", "visual"],
        "root": str(tmp_path),
        "image_size": 16,
        "frames": 3,
        "sha256": digests,
    }
    bundle = load_bundle(tmp_path, table)
    assert [len(bundle.splits[s]) for s in ("train", "val", "test")] == [6, 3, 3]
    assert bundle.info.num_outputs == 3 and bundle.info.input_shapes == {
        "audio": (1, 257, 1004),
        "visual": (3, 3, 16, 16),
    }
    assert bundle.splits["train"].labels.tolist() == [0, 0, 1, 1, 2, 2]  # order of first appearance in testSet.txt
    explicit = load_bundle(tmp_path, {**table, "labels": ["Dog", "Male speech", "Church bell"]})
    assert explicit.splits["train"].labels.tolist() == [2, 2, 1, 1, 0, 0]
    sample = explicit.splits["val"][0]
    assert sample["inputs"]["audio"].shape == (1, 257, 1004) and sample["label"].item() == 2
