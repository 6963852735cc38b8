"""Dataset kinds that read real datasets in the layouts their communities already prepare
(specs/toolkit-anchors.md §c; DESIGN.md section 5). Nothing is downloaded: `[data]` points at the
user's folder or file, and each kind's `format` field is the format id of that layout.

Decoding uses the `formats` extra (Pillow, soundfile, scipy), imported only when such a dataset
is built, so the core imports without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmcore.registry import ComponentRegistry


def register(registry: ComponentRegistry) -> None:
    """Register crema_d, kinetics_sounds, ave, av_mnist, cmu_mosi, cmu_mosei, ur_funny and mustard."""
    from mmcore.data.formats import av_mnist, ave, crema_d, kinetics_sounds, mosi, multibench_affect

    registry.dataset(
        "crema_d",
        crema_d.CremaDConfig,
        crema_d.build_crema_d,
        help="CREMA-D, OGM-GE split: frames + audio (format ogm-wav | pmr-pkl1004 | fbank-pt | fbank-npy), 6 classes",
    )
    registry.dataset(
        "kinetics_sounds",
        kinetics_sounds.KineticsSoundsConfig,
        kinetics_sounds.build_kinetics_sounds,
        help="Kinetics-Sounds, OGM-GE lists: fbank (1024 x 128) + 3 frames, 31 classes",
    )
    registry.dataset(
        "ave",
        ave.AVEConfig,
        ave.build_ave,
        help="AVE, official splits: event-segment frames + audio (pmr-pkl1004 | fbank-npy | fbank-pt), 28 classes",
    )
    registry.dataset(
        "av_mnist",
        av_mnist.AVMnistConfig,
        av_mnist.build_av_mnist,
        help="AV-MNIST, MultiBench npy layout: image 28 x 28 + audio 112 x 112, 10 digits; val = last 5,000 train rows",
    )
    registry.dataset(
        "cmu_mosi",
        mosi.SentimentConfig,
        mosi.build_cmu_mosi,
        help="CMU-MOSI pickles (format mmsa | mult): text, audio, vision sequences; sentiment regression or binary",
    )
    registry.dataset(
        "cmu_mosei",
        mosi.SentimentConfig,
        mosi.build_cmu_mosei,
        help="CMU-MOSEI pickles (format mmsa | mult): text, audio, vision sequences; sentiment regression or binary",
    )
    registry.dataset(
        "ur_funny",
        multibench_affect.MultiBenchAffectConfig,
        multibench_affect.build_ur_funny,
        help="UR-FUNNY, MultiBench humor.pkl: text, audio, vision sequences; binary humor",
    )
    registry.dataset(
        "mustard",
        multibench_affect.MultiBenchAffectConfig,
        multibench_affect.build_mustard,
        help="MUStARD, MultiBench sarcasm.pkl: text, audio, vision sequences; binary sarcasm",
    )
