"""The decoding pieces on hand-computed inputs: variant A's log spectrogram against a numpy STFT written
out frame by frame, the polyphase resampler, the RandomResizedCrop draw, and config validation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from format_helpers import host, run_config

from mmcore.config import parse_config
from mmcore.data.formats.audio import (
    STFT_SHAPE,
    ogm_log_spectrogram,
    read_waveform,
    resample,
)
from mmcore.data.formats.images import natural_key, random_resized_crop
from mmcore.errors import ConfigError


def numpy_log_stft_frame(samples: np.ndarray, frame: int) -> np.ndarray:
    """One column of log(|STFT| + 1e-7): n_fft 512, hop 353, periodic Hann, centred with reflect padding."""
    padded = np.pad(samples, 256, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    return np.log(np.abs(np.fft.rfft(padded[frame * 353 : frame * 353 + 512] * window)) + 1e-7)


def test_variant_a_spectrogram_matches_a_frame_by_frame_numpy_stft():
    rng = np.random.default_rng(0)
    clip = (0.3 * rng.standard_normal(int(1.5 * 22050))).astype(np.float32)
    clip[:100] = 1.7  # beyond [-1, 1]: clipped before the transform
    spectrogram = ogm_log_spectrogram(clip)
    assert tuple(spectrogram.shape) == STFT_SHAPE == (257, 188)
    tiled = np.clip(np.tile(clip, 3)[: 3 * 22050], -1, 1)  # a 1.5-s clip: x3, cut to 3 s, as OGM-GE does
    for frame in (0, 1, 94, 187):
        np.testing.assert_allclose(spectrogram[:, frame].numpy(), numpy_log_stft_frame(tiled, frame), atol=1e-3)
    short = clip[:5000]  # under 1 s: tiled until the 3 s are full
    np.testing.assert_allclose(
        ogm_log_spectrogram(short)[:, 150].numpy(),
        numpy_log_stft_frame(np.clip(np.tile(short, 14)[:66150], -1, 1), 150),
        atol=1e-3,
    )


def test_resampling_keeps_the_pitch_and_the_duration(tmp_path):
    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)], axis=1).astype(np.float32)
    soundfile.write(tmp_path / "tone.wav", stereo, 16000, subtype="FLOAT")
    mono, rate = read_waveform(tmp_path / "tone.wav")
    np.testing.assert_allclose(mono, 0.75 * stereo[:, 0], atol=1e-6)  # channels averaged
    out = resample(mono, rate, 22050)
    assert out.shape == (22050,) and out.dtype == np.float32
    assert np.argmax(np.abs(np.fft.rfft(out))) == 440  # 1-s signal: bin k is k Hz


def test_random_resized_crop_draws_inside_the_frame_within_scale_and_ratio():
    torch.manual_seed(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_crop(480, 360)
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 480 and 0 <= top < bottom <= 360
        assert 0.08 * 480 * 360 * 0.98 <= w * h <= 480 * 360
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02
    # a strip no crop of ratio 3/4..4/3 and scale >= 0.08 fits ten times: the centred fallback
    torch.manual_seed(0)
    assert random_resized_crop(400, 4) == (197, 0, 202, 4)


def test_natural_order_of_frame_names():
    names = ["frame_000010.jpg", "frame_00002.jpg", "frame_00001.jpg", "00003.jpg"]
    assert sorted(names, key=natural_key) == ["00003.jpg", "frame_00001.jpg", "frame_00002.jpg", "frame_000010.jpg"]


def test_format_fields_are_validated_with_their_paths():
    config = run_config(
        {
            "kind": "crema_d",
            "modalities": ["audio"],
            "root": "data/CREMA-D",
            "format": "wav",
            "sha256": ["not-a-digest"],
            "frames": 0,
            "labels": ["A", "A"],
        }
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(config, host().registry)
    text = str(caught.value)
    for path in ("$.data.format", "$.data.sha256", "$.data.frames", "$.data.labels"):
        assert path in text
    missing_root = run_config({"kind": "kinetics_sounds", "modalities": ["audio"]})
    with pytest.raises(ConfigError, match=r"\$\.data\.root"):
        parse_config(missing_root, host().registry)
