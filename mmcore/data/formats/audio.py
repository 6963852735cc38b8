"""Audio as the audio-visual codes prepare it (specs/toolkit-anchors.md §c, CREMA-D audio variants).

- Variant A (`WavSpectrogramReader`, OGM-GE): the waveform read with soundfile, mixed to mono,
  resampled to 22,050 Hz (scipy's polyphase filter), tiled to 3 s (x3 for clips of 1 s or more,
  as the official code tiles), clipped to [-1, 1], then a torch STFT (n_fft 512, hop 353, periodic
  Hann window, centred with reflect padding as librosa < 0.10 pads) and log(|S| + 1e-7): [1, 257, 188].
  The loader carries the clip; the STFT is the bundle's device transform (`log_spectrogram`).
- Variant B (`SpectrogramPickleReader`, PMR / DI-MML): a per-clip pickle of a 257 x 1004 array.
- Variant C (`FbankReader`, AST-style Kaldi fbank): a (T, 128) array saved with torch.save (.pt,
  loaded with weights_only, which runs no code) or numpy (.npy, allow_pickle off): [1, T, 128].
Every reader raises a DataError naming the file for a missing, truncated or unreadable file and
for an array of the wrong shape.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import numpy as np
import soundfile
import torch
from attrs import frozen
from scipy.signal import firwin, resample_poly
from torch import Tensor

from mmcore.data.formats.trusted_pickle import PickleTrust, load_trusted_pickle
from mmcore.errors import DataError

SAMPLE_RATE = 22050
CLIP_SECONDS = 3
N_FFT = 512
HOP = 353
LOG_FLOOR = 1e-7
STFT_SHAPE = (N_FFT // 2 + 1, 1 + SAMPLE_RATE * CLIP_SECONDS // HOP)  # (257, 188)
FBANK_BINS = 128
# libsndfile's log notes "data : <declared> (should be <present>)" when a file ends early
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def read_waveform(path: Path) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sample rate); DataError for a missing, unreadable, truncated or empty file."""
    if not path.is_file():
        raise DataError(path, "no such audio file")
    try:
        with soundfile.SoundFile(path) as file:
            short = _SHORT_DATA.search(file.extra_info)
            samples = file.read(dtype="float32", always_2d=True)
            rate = file.samplerate
    except (soundfile.SoundFileError, OSError, ValueError) as error:
        raise DataError(path, f"not a readable audio file ({error})") from error
    if short and int(short.group(2)) < int(short.group(1)):
        raise DataError(path, f"truncated audio file: {short.group(2)} of {short.group(1)} data bytes present")
    if samples.shape[0] == 0:
        raise DataError(path, "the audio file holds no samples")
    return samples.mean(axis=1), rate


@functools.lru_cache(maxsize=8)
def polyphase_lowpass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing filter `resample_poly(x, up, down)` designs by default (Kaiser, beta 5,
    20 * max(up, down) + 1 taps), in float32. Designing it costs more than filtering one clip, so a
    process designs it once per rate pair; passed back as `window`, the output is bit-identical."""
    rate = max(up, down)
    return firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(np.float32)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    common = math.gcd(rate, target)
    up, down = target // common, rate // common
    return resample_poly(samples, up, down, window=polyphase_lowpass(up, down)).astype(np.float32)


CLIP_SAMPLES = SAMPLE_RATE * CLIP_SECONDS


def ogm_clip(samples: np.ndarray) -> np.ndarray:
    """Variant A's 3-s clip from 22,050 Hz mono samples: tiled (x3 at least, as OGM-GE tiles; until
    3 s are full for shorter clips), cut to 3 s, clipped to [-1, 1]."""
    tiled = np.tile(samples, max(3, -(-CLIP_SAMPLES // samples.shape[0])))[:CLIP_SAMPLES]
    return np.clip(tiled, -1.0, 1.0)


@functools.lru_cache(maxsize=4)
def _hann_window(device: torch.device) -> Tensor:
    return torch.hann_window(N_FFT, device=device)


def log_spectrogram(clips: Tensor) -> Tensor:
    """Variant A's transform, on the clips' device: [..., 66150] -> [..., 257, 188] log(|STFT| + 1e-7).
    An input that is not a 3-s clip (a spectrogram already) is returned as it is."""
    if clips.shape[-1] != CLIP_SAMPLES:
        return clips
    spectrum = torch.stft(
        clips.reshape(-1, CLIP_SAMPLES).float(),
        N_FFT,
        hop_length=HOP,
        window=_hann_window(clips.device),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return torch.log(spectrum.abs() + LOG_FLOOR).reshape(*clips.shape[:-1], *STFT_SHAPE)


def ogm_log_spectrogram(samples: np.ndarray) -> Tensor:
    """Variant A from 22,050 Hz mono samples, on the host: [257, 188]."""
    return log_spectrogram(torch.from_numpy(ogm_clip(samples)))


def check_shape(path: Path, array: object, shape: tuple[int, ...]) -> Tensor:
    """`array` (numpy or torch) as float32 if it has exactly `shape`; DataError otherwise."""
    if isinstance(array, np.ndarray):
        if not np.issubdtype(array.dtype, np.number):
            raise DataError(path, f"holds a {array.dtype} array; expected numbers of shape {shape}")
        array = torch.from_numpy(np.ascontiguousarray(array))
    if not isinstance(array, Tensor):
        raise DataError(path, f"holds a {type(array).__name__}; expected an array of shape {shape}")
    if tuple(array.shape) != shape:
        raise DataError(path, f"array of shape {tuple(array.shape)}; expected {shape}")
    return array.float()


@frozen
class WavSpectrogramReader:
    """Variant A: `folder/<clip><suffix>` -> the 3-s clip [1, 66150]; `log_spectrogram` turns a
    batch of them into [B, 1, 257, 188] on the device (one batched cuFFT call on a GPU, where each
    worker would spend about a quarter of a clip's decoding time)."""

    folder: Path
    suffix: str = ".wav"

    on_device = staticmethod(log_spectrogram)

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, *STFT_SHAPE)

    def path_of(self, clip: str) -> Path:
        return self.folder / f"{clip}{self.suffix}"

    def __call__(self, clip: str, train: bool) -> Tensor:
        samples, rate = read_waveform(self.path_of(clip))
        return torch.from_numpy(ogm_clip(resample(samples, rate, SAMPLE_RATE))).unsqueeze(0)


@frozen
class SpectrogramPickleReader:
    """Variant B: a pickled array `folder/<clip>.pkl` of `frequency_bins x frames` -> [1, bins, frames]."""

    folder: Path
    trust: PickleTrust
    frequency_bins: int = 257
    frames: int = 1004

    on_device = None  # what the loader carries is the model's input

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, self.frequency_bins, self.frames)

    def path_of(self, clip: str) -> Path:
        return self.folder / f"{clip}.pkl"

    def __call__(self, clip: str, train: bool) -> Tensor:
        path = self.path_of(clip)
        return check_shape(path, load_trusted_pickle(path, self.trust), self.shape[1:]).unsqueeze(0)


def load_array(path: Path) -> object:
    """A .npy (no pickled objects) or .pt (tensors only) file's array; DataError if unreadable."""
    if not path.is_file():
        raise DataError(path, "no such file")
    try:
        if path.suffix == ".pt":
            return torch.load(path, map_location="cpu", weights_only=True)
        return np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - numpy and torch raise many types for a damaged file
        raise DataError(path, f"not a readable {path.suffix} array ({type(error).__name__}: {error})") from error


@frozen
class FbankReader:
    """Variant C: `folder/<clip><suffix>` holding a (frames, 128) filter bank -> [1, frames, 128]."""

    folder: Path
    suffix: str  # ".npy" or ".pt"
    frames: int = 1024
    bins: int = FBANK_BINS

    on_device = None  # what the loader carries is the model's input

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, self.frames, self.bins)

    def path_of(self, clip: str) -> Path:
        return self.folder / f"{clip}{self.suffix}"

    def __call__(self, clip: str, train: bool) -> Tensor:
        path = self.path_of(clip)
        return check_shape(path, load_array(path), self.shape[1:]).unsqueeze(0)


def fbank_frames_of(path: Path) -> int:
    """The frame count T of one (T, 128) filter-bank file, for configs that leave it to the data."""
    array = load_array(path)
    shape = tuple(getattr(array, "shape", ()))
    if len(shape) != 2 or shape[1] != FBANK_BINS:
        raise DataError(path, f"array of shape {shape}; expected (frames, {FBANK_BINS})")
    return int(shape[0])


def audio_reader(
    audio_format: str, folder: Path, trust: PickleTrust, frames: int = 0, first_clip: str | None = None
) -> object:
    """The reader of a format id's audio: `ogm-wav` (A), `pmr-pkl1004` (B), `fbank-pt` / `fbank-npy` (C).

    For fbank, `frames` = 0 takes T from `first_clip`'s file."""
    if audio_format == "ogm-wav":
        return WavSpectrogramReader(folder)
    if audio_format == "pmr-pkl1004":
        return SpectrogramPickleReader(folder, trust)
    if audio_format not in ("fbank-pt", "fbank-npy"):
        raise ValueError(f"unknown audio format {audio_format!r}")
    suffix = ".pt" if audio_format == "fbank-pt" else ".npy"
    if not frames and first_clip is not None:
        frames = fbank_frames_of(folder / f"{first_clip}{suffix}")
    return FbankReader(folder, suffix, frames or 1024)
