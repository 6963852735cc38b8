"""Bad data gets a DataError naming the file (exit code 1): a missing folder or file, a corrupt
image, a truncated audio file, an array of the wrong shape, an untrusted pickle. Also: errors from
loader workers stay DataErrors, and a missing decoding library names the extra to install."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import soundfile
import tomli_w
from format_helpers import fixtures, load_bundle, run_config

from mmcore.cli import main
from mmcore.data.formats.dependencies import require
from mmcore.data.loading import make_loader
from mmcore.errors import ConfigError, DataError


def crema_table(root, **keys):
    return {
        "kind": "crema_d",
        "modalities": ["audio", "visual"],
        "root": str(root),
        "image_size": 16,
        "val_fraction": 0.5,
        **keys,
    }


@pytest.fixture
def crema(tmp_path):
    """A small CREMA-D folder: 2 training and 1 test clip per class, wav audio, 1 frame each."""
    listed = fixtures().write_crema_d(tmp_path, train_per_class=2, test_per_class=1, frames=1)
    return tmp_path, listed


def test_missing_folders_and_files_are_named(crema, tmp_path_factory):
    root, listed = crema
    missing = root / "nowhere"
    with pytest.raises(DataError, match=f"{missing}: no such folder"):
        load_bundle(root, crema_table(missing))
    with pytest.raises(DataError, match=r"Image-02-FPS: no such folder \(frames\)"):
        load_bundle(root, crema_table(root, frames_dir="Image-02-FPS"))
    with pytest.raises(DataError, match=r"val\.csv: no such list file"):
        load_bundle(root, crema_table(root, test_list="val.csv"))
    clip = listed["test"][2][0]
    (root / "AudioWAV" / f"{clip}.wav").unlink()
    with pytest.raises(DataError, match=rf"{clip}\.wav: missing \(1 of 6 clips listed in .*test\.csv lack a file"):
        load_bundle(root, crema_table(root))
    bundle = load_bundle(root, crema_table(root, skip_missing=True))
    assert len(bundle.splits["test"]) == 5 and clip not in bundle.splits["test"].clips


def test_a_corrupt_or_truncated_image_is_named(crema):
    root, listed = crema
    bundle = load_bundle(root, crema_table(root, modalities=["visual"]))
    garbage, truncated = (root / "Image-01-FPS" / c / "00001.jpg" for c, _ in listed["test"][:2])
    garbage.write_bytes(b"this is not a jpeg")
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DataError, match=f"{garbage}: not a readable image"):
        bundle.splits["test"][0]
    with pytest.raises(DataError, match=f"{truncated}: not a readable image"):
        bundle.splits["test"][1]


def test_a_validation_carve_that_leaves_a_split_empty_is_a_config_error(crema):
    root, _ = crema
    with pytest.raises(
        ConfigError,
        match=r"\$\.data\.val_fraction: 0\.2 of each class of the 12 listed training clips "
        r"leaves no validation clip",
    ):
        load_bundle(root, crema_table(root, val_fraction=0.2))  # round(2 x 0.2) = 0
    with pytest.raises(ConfigError, match="leaves no training clip"):
        load_bundle(root, crema_table(root, val_fraction=0.9))


def test_a_validation_carve_that_empties_one_class_is_a_config_error(tmp_path):
    listed = fixtures().write_crema_d(tmp_path, train_per_class=3, test_per_class=1, frames=1)
    train = (tmp_path / "train.csv").read_text().splitlines()
    sad = [line for line in train if line.endswith(",SAD")]
    (tmp_path / "train.csv").write_text("\n".join([line for line in train if line not in sad[1:]]) + "\n")
    assert len(listed["train"]) == 18 and len(sad) == 3  # 16 listed now; SAD (class 2) keeps one clip
    load_bundle(tmp_path, crema_table(tmp_path, val_fraction=0.5))  # round(0.5) = 0: SAD's clip trains
    with pytest.raises(ConfigError, match=r"every listed training clip of class\(es\) \[2\]"):
        load_bundle(tmp_path, crema_table(tmp_path, val_fraction=0.6))  # SAD: round(0.6) = 1 of 1


def test_truncated_unreadable_or_empty_audio_is_named(crema):
    root, listed = crema
    bundle = load_bundle(root, crema_table(root, modalities=["audio"]))
    short, garbage, empty = (root / "AudioWAV" / f"{c}.wav" for c, _ in listed["test"][:3])
    short.write_bytes(short.read_bytes()[: 44 + 3000])  # header + 1,500 of 16,000 samples
    garbage.write_bytes(b"RIFF....WAVEnot audio")
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DataError, match=f"{short}: truncated audio file: 3000 of 32000 data bytes present"):
        bundle.splits["test"][0]
    with pytest.raises(DataError, match=f"{garbage}: not a readable audio file"):
        bundle.splits["test"][1]
    with pytest.raises(DataError, match=f"{empty}: the audio file holds no samples"):
        bundle.splits["test"][2]


def test_arrays_of_the_wrong_shape_are_named(tmp_path):
    write = fixtures()
    listed = write.write_crema_d(tmp_path / "c", 2, 1, audio_format="fbank-npy", frames=1, fbank_frames=20)
    bad = tmp_path / "c" / "audio" / f"{listed['test'][0][0]}.npy"
    np.save(bad, np.zeros((20, 64), dtype=np.float32))
    bundle = load_bundle(tmp_path, crema_table(tmp_path / "c", modalities=["audio"], format="fbank-npy"))
    with pytest.raises(DataError, match=rf"{bad}: array of shape \(20, 64\); expected \(20, 128\)"):
        bundle.splits["test"][0]
    listed = write.write_crema_d(tmp_path / "p", 2, 1, audio_format="pmr-pkl1004", frames=1)
    bad = tmp_path / "p" / "Audio-1004" / f"{listed['test'][0][0]}.pkl"
    write.write_array(bad, np.zeros((257, 1000), dtype=np.float32))
    bundle = load_bundle(
        tmp_path, crema_table(tmp_path / "p", modalities=["audio"], format="pmr-pkl1004", trusted=True)
    )
    with pytest.raises(DataError, match=rf"{bad}: array of shape \(257, 1000\); expected \(257, 1004\)"):
        bundle.splits["test"][0]
    write.write_av_mnist(tmp_path / "m", 12, 4)
    bad = tmp_path / "m" / "audio" / "test_data.npy"
    np.save(bad, np.zeros((4, 100, 100), dtype=np.float32))
    with pytest.raises(DataError, match=rf"{bad}: array of shape \(4, 100, 100\); expected \(4, 112, 112\)"):
        load_bundle(tmp_path, {"kind": "av_mnist", "modalities": ["audio"], "root": str(tmp_path / "m"), "val_size": 2})
    data = write.mmsa_tables({"train": 3, "valid": 2, "test": 2}, steps=(4, 4, 4), dims=(6, 5, 3))
    data["valid"]["vision"] = data["valid"]["vision"][:, :, 0]
    write.write_pickle(tmp_path / "s.pkl", data)
    with pytest.raises(DataError, match=r"s\.pkl: val/vision is a float32 array of shape \(2, 4\); expected 3 numeric"):
        load_bundle(
            tmp_path, {"kind": "cmu_mosi", "modalities": ["vision"], "path": str(tmp_path / "s.pkl"), "trusted": True}
        )


def test_an_empty_label_file_is_named(tmp_path):
    fixtures().write_av_mnist(tmp_path / "m", 12, 4)
    empty = tmp_path / "m" / "test_labels.npy"
    np.save(empty, np.zeros(0, dtype=np.int64))
    with pytest.raises(DataError, match=rf"{empty}: expected a 1-D array of digits"):
        load_bundle(tmp_path, {"kind": "av_mnist", "modalities": ["audio"], "root": str(tmp_path / "m"), "val_size": 2})


def test_an_untrusted_pickle_is_refused_with_its_digest_and_the_keys_to_set(tmp_path):
    write = fixtures()
    write.write_pickle(
        tmp_path / "humor.pkl", write.front_padded_tables({"train": 2, "valid": 1, "test": 1}, (4, 4, 4), (3, 3, 3))
    )
    digest = hashlib.sha256((tmp_path / "humor.pkl").read_bytes()).hexdigest()
    table = {"kind": "ur_funny", "modalities": ["text"], "path": str(tmp_path / "humor.pkl")}
    with pytest.raises(DataError) as caught:
        load_bundle(tmp_path, table)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'humor.pkl'}: not loaded: unpickling runs code")
    assert f"SHA-256 {digest}" in message and "$.data.sha256" in message and "$.data.trusted = true" in message
    assert len(load_bundle(tmp_path, {**table, "sha256": [digest.upper()]}).splits["train"]) == 2
    with pytest.raises(DataError, match="not loaded: unpickling runs code"):
        load_bundle(tmp_path, {**table, "sha256": ["0" * 64]})
    write.write_crema_d(tmp_path / "c", 2, 1, audio_format="pmr-pkl1004", frames=1)
    folder = tmp_path / "c" / "Audio-1004"
    with pytest.raises(
        DataError, match=rf"{folder}/\w+\.pkl: not loaded: unpickling runs code"
    ):  # before training starts
        load_bundle(tmp_path, crema_table(tmp_path / "c", modalities=["audio"], format="pmr-pkl1004"))


def test_the_cli_reports_a_data_error_with_exit_code_1(tmp_path, capsys):
    config = run_config({"kind": "av_mnist", "modalities": ["image"], "root": str(tmp_path / "avmnist")})
    (tmp_path / "run.toml").write_text(tomli_w.dumps(config))
    assert main(["run", str(tmp_path / "run.toml"), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'avmnist'}: no such folder ($.data.root)"


def test_a_data_error_in_a_loader_worker_stays_a_data_error(crema):
    root, listed = crema
    bundle = load_bundle(root, crema_table(root, modalities=["visual"]))
    broken = root / "Image-01-FPS" / listed["test"][3][0] / "00001.jpg"
    broken.write_bytes(b"broken")
    with pytest.raises(DataError, match=f"{broken}: not a readable image"):
        list(make_loader(bundle.splits["test"], batch_size=2, shuffle=False, seed=0, num_workers=2))


def test_a_missing_decoding_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # makes `import soundfile` fail
    with pytest.raises(
        ConfigError,
        match=r"\$\.data\.kind: 'crema_d' needs soundfile, which is not installed: "
        r"pip install 'mmcore\[formats\]'",
    ):
        require("crema_d", "PIL", "soundfile")
