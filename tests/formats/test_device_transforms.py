"""Frames travel as uint8 pixels and variant-A audio as 3-s clips; both are finished where the batch
lands (DataBundle.on_device: ImageNet normalisation, the log STFT). The resampler's cached filter
changes nothing. Pinned on hand-computed pixels, on the host path they replace, and on the trainer's
paths: training batches, evaluation, and input-level corruption (which acts on model inputs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from format_helpers import fixtures, host, run_config
from scipy.signal import resample_poly

from mmcore.data.corruption import CorruptionConfig, add_noise
from mmcore.data.formats.audio import (
    WavSpectrogramReader,
    log_spectrogram,
    ogm_log_spectrogram,
    read_waveform,
    resample,
)
from mmcore.data.formats.images import normalize_frames
from mmcore.testing import make_trainer


def test_normalize_frames_on_hand_computed_pixels():
    pixels = torch.tensor([0, 128, 255], dtype=torch.uint8).view(3, 1, 1).expand(2, 3, 3, 1, 2)  # [T, 3, H, W]
    out = normalize_frames(pixels)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 3, 1, 2)
    by_hand = [(0 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (255 / 255 - 0.406) / 0.225]
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor(by_hand), rtol=0, atol=1e-6)
    assert normalize_frames(out) is out  # already model input: passed as it is


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_resampling_with_the_cached_filter_is_scipys_default_bit_for_bit(rate):
    samples = np.random.default_rng(rate).standard_normal(rate // 2).astype(np.float32)
    common = math.gcd(rate, 22050)
    expected = resample_poly(samples, 22050 // common, rate // common).astype(np.float32)
    assert np.array_equal(resample(samples, rate, 22050), expected)


def test_variant_a_clips_become_the_host_spectrogram_on_the_device_batch_by_batch(tmp_path):
    fixtures().write_crema_d(tmp_path, train_per_class=1, test_per_class=1, frames=1)
    reader = WavSpectrogramReader(tmp_path / "AudioWAV")
    clips = sorted(p.stem for p in reader.folder.glob("*.wav"))[:3]
    loaded = torch.stack([reader(c, train=True) for c in clips])
    assert loaded.shape == (3, 1, 66150) and reader.on_device is log_spectrogram
    on_device = log_spectrogram(loaded)
    for row, clip in enumerate(clips):
        samples, rate = read_waveform(reader.path_of(clip))
        torch.testing.assert_close(on_device[row, 0], ogm_log_spectrogram(resample(samples, rate, 22050)))
    assert log_spectrogram(on_device) is on_device  # a spectrogram passes as it is


@pytest.fixture
def crema_trainer(tmp_path):
    fixtures().write_crema_d(tmp_path, train_per_class=2, test_per_class=1, frames=2, frame_size=(24, 20))
    data = {
        "kind": "crema_d",
        "modalities": ["audio", "visual"],
        "root": str(tmp_path),
        "image_size": 16,
        "frames": 2,
        "val_fraction": 0.5,
        "batch_size": 4,
    }
    return make_trainer(run_config(data, seed=3), host())


def test_the_trainer_normalises_frames_after_the_copy_and_evaluation_does_too(crema_trainer):
    trainer = crema_trainer
    batch = next(iter(trainer.evaluator.train_loader(0, None)))
    assert batch.inputs["visual"].dtype == torch.uint8  # what crosses processes and the bus
    on_device = trainer.to_device(batch)
    torch.testing.assert_close(on_device.inputs["visual"], normalize_frames(batch.inputs["visual"]))
    assert batch.inputs["audio"].shape == (4, 1, 66150)
    assert on_device.inputs["audio"].shape == (4, 1, 257, 188) and on_device.inputs["audio"].dtype == torch.float32
    state = trainer.train_step([on_device])
    assert state.batch.inputs["visual"].dtype == torch.float32
    assert all(torch.isfinite(loss).all() for loss in state.losses.values())
    seen = trainer.map_split("val", lambda b, model: b.inputs["visual"].dtype)
    assert seen and all(dtype == torch.float32 for dtype in seen)
    assert 0.0 <= trainer.evaluator.evaluate("val")["acc"] <= 1.0


def test_input_level_noise_and_missing_inputs_act_on_normalised_frames(crema_trainer):
    trainer = crema_trainer
    clean = trainer.evaluator.split("val")[0]
    noisy_config = CorruptionConfig(level="input", noise_rate=0.5, noise="gaussian", modalities=("visual",), seed=7)
    noisy = trainer.evaluator.split("val", noisy_config)[0]
    frames = normalize_frames(clean["inputs"]["visual"])
    expected = add_noise(frames[None], torch.tensor([clean["index"]]), noisy_config, "visual", None)[0]
    torch.testing.assert_close(noisy["inputs"]["visual"], expected)
    loaded = next(iter(trainer.evaluator.eval_loader([noisy])))
    assert trainer.to_device(loaded).inputs["visual"].equal(expected[None])  # noised floats pass unchanged
    gone = trainer.evaluator.split("val", CorruptionConfig(missing_rate=1.0, modalities=("visual",)))[0]
    assert not bool(gone["present"][1]) and gone["inputs"]["visual"].dtype == torch.float32
    assert not gone["inputs"]["visual"].any()  # zero in the model's input space, not black pixels


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_device_transforms_on_a_gpu_agree_with_the_host():
    clips = torch.rand(4, 1, 66150) * 2 - 1
    torch.testing.assert_close(log_spectrogram(clips.cuda()).cpu(), log_spectrogram(clips), rtol=1e-4, atol=1e-4)
    pixels = torch.randint(0, 256, (4, 3, 3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(normalize_frames(pixels.cuda()).cpu(), normalize_frames(pixels))


def test_a_partly_missing_modality_is_decoded_in_every_row_so_batches_stack(crema_trainer):
    trainer = crema_trainer
    config = CorruptionConfig(missing_rate=0.5, modalities=("visual",), seed=1)
    split = trainer.evaluator.split("val", config)
    rows = [split[i] for i in range(len(split))]
    present = [bool(row["present"][1]) for row in rows]
    assert any(present) and not all(present)  # some frames missing, some kept
    assert all(row["inputs"]["visual"].dtype == torch.float32 for row in rows)
    assert all(row["inputs"]["audio"].shape == (1, 66150) for row in rows)  # untouched: the device decodes it
    batch = trainer.to_device(next(iter(trainer.evaluator.eval_loader(split, batch_size=len(split)))))
    kept = [i for i, p in enumerate(present) if p]
    torch.testing.assert_close(batch.inputs["visual"][kept], normalize_frames(torch.stack(
        [trainer.data.splits["val"][i]["inputs"]["visual"] for i in kept])))
    assert not batch.inputs["visual"][[i for i, p in enumerate(present) if not p]].any()
