"""av_mnist, cmu_mosi / cmu_mosei (MMSA and MulT pickles), ur_funny and mustard (MultiBench pickles):
fixture files written here, loaded through the config path; shapes, masks, labels, split sizes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from format_helpers import fixtures, host, load_bundle, run_config, whole

from mmcore.config import parse_config
from mmcore.data.formats.mosi import MMSA_PUBLISHED_SHA256
from mmcore.errors import ConfigError
from mmcore.trainer import Trainer


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_av_mnist_layout_scaling_and_last_rows_validation(tmp_path):
    written = fixtures().write_av_mnist(tmp_path, train_rows=30, test_rows=7, flat_images=True)
    bundle = load_bundle(
        tmp_path, {"kind": "av_mnist", "modalities": ["image", "audio"], "root": str(tmp_path), "val_size": 8}
    )
    assert bundle.info.input_shapes == {"image": (1, 28, 28), "audio": (1, 112, 112)} and bundle.info.num_outputs == 10
    assert [len(bundle.splits[s]) for s in ("train", "val", "test")] == [22, 8, 7]
    val = whole(bundle.splits["val"])
    # pixel (0, 0) holds the row number: validation is rows 22..29 of the training files, scaled by 1/255
    assert torch.allclose(val.inputs["image"][:, 0, 0, 0] * 255, torch.arange(22, 30).float())
    assert torch.allclose(val.inputs["audio"][:, 0, 0, 0] * 255, torch.arange(22, 30).float())
    assert val.label.tolist() == written["train_labels"][22:].tolist() and val.index.tolist() == list(range(8))
    assert float(whole(bundle.splits["train"]).inputs["audio"].max()) <= 1.0
    raw = load_bundle(
        tmp_path,
        {"kind": "av_mnist", "modalities": ["audio"], "root": str(tmp_path), "normalize": False, "val_size": 8},
    )
    assert float(whole(raw.splits["test"]).inputs["audio"].max()) > 1.0
    with pytest.raises(ConfigError, match=r"\$\.data\.val_size: 5000 leaves no training rows of 30"):
        load_bundle(tmp_path, {"kind": "av_mnist", "modalities": ["image"], "root": str(tmp_path)})


def test_mmsa_pickle_masks_labels_and_published_digests(tmp_path):
    data = fixtures().mmsa_tables({"train": 6, "valid": 3, "test": 4}, steps=(10, 14, 12), dims=(16, 5, 20))
    path = tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl"
    fixtures().write_pickle(path, data)
    table = {"kind": "cmu_mosi", "modalities": ["text", "audio", "vision"], "path": str(path), "sha256": [sha256(path)]}
    bundle = load_bundle(tmp_path, table)
    info = bundle.info
    assert (info.task, info.num_outputs) == ("regression", 1)
    assert info.input_shapes == {"text": (10, 16), "audio": (14, 5), "vision": (12, 20)} and all(info.sequence.values())
    assert [len(bundle.splits[s]) for s in ("train", "val", "test")] == [6, 3, 4]
    test, source = whole(bundle.splits["test"]), data["test"]
    assert torch.allclose(test.label, torch.from_numpy(source["regression_labels"]).float())
    assert torch.equal(test.masks["text"], torch.from_numpy(source["text_bert"][:, 1] > 0))
    assert test.masks["audio"].sum(1).tolist() == source["audio_lengths"]
    assert test.masks["vision"].sum(1).tolist() == source["vision_lengths"]
    assert test.inputs["audio"][:, 0, 0].eq(0).all() and torch.isfinite(test.inputs["audio"]).all()  # -inf -> 0
    assert torch.equal(test.inputs["vision"], torch.from_numpy(source["vision"]))
    assert len(MMSA_PUBLISHED_SHA256) == 5 and all(len(d) == 64 for d in MMSA_PUBLISHED_SHA256)
    # an aligned file (one length for all): every modality takes the text's mask; lengths are unaligned-only
    aligned = fixtures().mmsa_tables({"train": 3, "valid": 2, "test": 4}, steps=(9, 9, 9), dims=(16, 5, 20))
    fixtures().write_pickle(path, aligned)
    test = whole(load_bundle(tmp_path, {**table, "sha256": [sha256(path)]}).splits["test"])
    text_mask = torch.from_numpy(aligned["test"]["text_bert"][:, 1] > 0)
    assert all(torch.equal(test.masks[m], text_mask) for m in ("text", "audio", "vision"))


BINARISED = {"binary_has0": [1.0, 0.0, 1.0, 1.0], "binary_non0": [0.0, 1.0, 1.0], "binary_gt0": [0.0, 0.0, 1.0, 1.0]}


@pytest.mark.parametrize("task", BINARISED)
def test_sentiment_binarisation(tmp_path, task):
    data = fixtures().mmsa_tables({"train": 4, "valid": 2, "test": 4}, steps=(6, 6, 6), dims=(8, 5, 20))
    data["test"]["regression_labels"] = np.array([0.0, -1.2, 2.0, 0.4])
    path = tmp_path / "aligned_50.pkl"
    fixtures().write_pickle(path, data)
    bundle = load_bundle(
        tmp_path,
        {"kind": "cmu_mosei", "modalities": ["text", "audio"], "path": str(path), "trusted": True, "task": task},
    )
    test = whole(bundle.splits["test"])
    assert bundle.info.task == "binary" and test.label.tolist() == BINARISED[task]  # scores 0, -1.2, 2, 0.4


def test_mult_pickle_is_left_aligned(tmp_path):
    data = fixtures().front_padded_tables({"train": 5, "valid": 2, "test": 3}, steps=(8, 8, 8), dims=(6, 5, 4))
    path = tmp_path / "mosi_data.pkl"
    fixtures().write_pickle(path, data)
    bundle = load_bundle(
        tmp_path,
        {"kind": "cmu_mosi", "modalities": ["vision", "text"], "path": str(path), "format": "mult", "trusted": True},
    )
    test, source = whole(bundle.splits["test"]), data["test"]
    real = (source["text"] != 0).any(-1)  # aligned: every modality starts where the text starts
    assert torch.equal(test.masks["text"].sum(1), torch.from_numpy(real.sum(1)))
    assert torch.equal(test.masks["vision"], test.masks["text"])
    for row in range(3):
        length = int(real[row].sum())
        assert torch.equal(test.inputs["vision"][row, :length], torch.from_numpy(source["vision"][row, -length:]))
        assert test.inputs["vision"][row, length:].eq(0).all()
    assert torch.allclose(test.label, torch.from_numpy(source["labels"].reshape(-1)))


@pytest.mark.parametrize(
    "kind, labels, positive", [("ur_funny", (0.0, 1.0), [0.0, 1.0]), ("mustard", (-1.0, 0.0, 1.0), [0.0, 0.0, 1.0])]
)
def test_multibench_affect_drops_empty_text_and_cuts_to_max_seq_len(tmp_path, kind, labels, positive):
    data = fixtures().front_padded_tables(
        {"train": 6, "valid": 3, "test": 5}, steps=(12, 12, 12), dims=(30, 8, 7), label_values=labels, empty_text_rows=1
    )
    path = tmp_path / "data.pkl"
    fixtures().write_pickle(path, data)
    bundle = load_bundle(
        tmp_path,
        {
            "kind": kind,
            "modalities": ["text", "audio", "vision"],
            "path": str(path),
            "sha256": [sha256(path)],
            "max_seq_len": 5,
        },
    )
    assert bundle.info.task == "binary" and bundle.info.input_shapes == {
        "text": (5, 30),
        "audio": (5, 8),
        "vision": (5, 7),
    }
    assert [len(bundle.splits[s]) for s in ("train", "val", "test")] == [5, 2, 4]  # each split's empty-text row dropped
    test, source = whole(bundle.splits["test"]), data["test"]
    lengths = (source["text"][1:] != 0).any(-1).sum(1)
    assert test.masks["audio"].sum(1).tolist() == np.minimum(lengths, 5).tolist()
    scores = source["labels"].reshape(-1)[1:]
    assert test.label.tolist() == [positive[labels.index(s)] for s in scores]
    assert torch.isfinite(test.inputs["audio"]).all()
    row = int(np.argmax(lengths))
    start = 12 - int(lengths[row])
    assert torch.equal(
        test.inputs["text"][row, : min(5, int(lengths[row]))],
        torch.from_numpy(source["text"][1 + row, start : start + 5]),
    )


def test_a_regression_run_trains_and_reports_the_sentiment_metrics(tmp_path):
    data = fixtures().mmsa_tables({"train": 24, "valid": 8, "test": 8}, steps=(6, 7, 5), dims=(8, 5, 6))
    path = tmp_path / "aligned_50.pkl"
    fixtures().write_pickle(path, data)
    config = run_config(
        {
            "kind": "cmu_mosi",
            "modalities": ["text", "audio", "vision"],
            "path": str(path),
            "trusted": True,
            "batch_size": 8,
        },
        epochs=2,
        threads=1,
    )
    summary = Trainer(parse_config(config, host().registry), host().registry).fit()
    expected = {"mae", "corr", "acc2_has0", "acc2_non0", "f1_has0", "f1_non0", "acc5", "acc7", "loss"}
    assert expected <= set(summary["test"]) and expected <= set(summary["val"])
    assert 0.0 <= summary["test"]["acc7"] <= 1.0 and summary["test"]["mae"] > 0
