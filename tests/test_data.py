"""Image sources and deterministic, restartable batching."""
import gzip
import os
import struct

import numpy as np
import pytest

from argen_jax.data import images, pipeline
from argen_jax.errors import ConfigError, DataError


def write_idx(path, arr, gz=False):
    header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim,
                                                                   *arr.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def idx_folder(tmp_path):
    rs = np.random.RandomState(0)
    for split, n in (("train", 12), ("t10k", 5)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rs.randint(0, 256, (n, 6, 6)), True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", rs.randint(0, 10, (n,)))
    return str(tmp_path)


def test_idx_folder_round_trip(idx_folder):
    train = images.load_idx_folder(idx_folder, "train")
    test = images.load_idx_folder(idx_folder, "test")
    assert train.images.shape == (12, 6, 6, 1) and train.images.dtype == np.uint8
    assert test.labels.shape == (5,) and test.labels.dtype == np.int32


def test_missing_and_corrupt_files_name_the_problem(tmp_path, idx_folder):
    with pytest.raises(DataError, match="not found"):
        images.load_idx_folder(str(tmp_path / "nope"), "train")
    with open(os.path.join(idx_folder, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(b"garbage!")
    with pytest.raises(DataError, match="idx"):
        images.load_idx_folder(idx_folder, "test")


def test_truncated_or_non_gzip_idx_files_are_one_line_data_errors(idx_folder):
    path = os.path.join(idx_folder, "train-images-idx3-ubyte.gz")
    with open(path, "rb") as f:
        whole = f.read()
    for damaged in (whole[: len(whole) // 2], b"not gzip at all"):
        with open(path, "wb") as f:
            f.write(damaged)
        with pytest.raises(DataError, match="train-images-idx3-ubyte.*could not be read") as e:
            images.load_idx_folder(idx_folder, "train")
        assert "\n" not in str(e.value)


def test_offline_sources():
    d = images.load_digits("test")
    assert d.images.shape[1:] == (8, 8, 1) and d.images.max() == 255
    m = images.load_mnist_offline("test")
    assert m.images.shape == (500, 28, 28, 1)


def _data(binarize="dynamic"):
    tr, te = images.load_digits("train"), images.load_digits("test")
    return pipeline.ImageData(tr, te, batch_size=32, eval_batch_size=50, seed=3,
                              binarize=binarize)


def test_batches_are_a_function_of_step():
    a, b = _data(), _data()
    for step in (0, 5, 200):  # 200 is in a later epoch
        x, y = a.train_batch(step), b.train_batch(step)
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(a.train_batch(0)["image"], a.train_batch(1)["image"])
    assert set(np.unique(a.train_batch(0)["image"])) <= {0, 1}


def test_epoch_visits_every_example_once():
    d = _data("none")
    spe = d.train_batch.steps_per_epoch
    idx = np.concatenate([d.train_batch.indices(s) for s in range(spe)])
    assert len(np.unique(idx)) == len(idx) == spe * 32


def test_eval_batches_cover_the_test_set_once_with_mask():
    d = _data()
    batches = list(d.eval_batches())
    assert sum(b["mask"].sum() for b in batches) == len(d.test_set)
    assert all(b["image"].shape[0] == 50 for b in batches)
    again = np.concatenate([b["image"] for b in d.eval_batches()])
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), again)


def test_fixed_binarization_is_bernoulli_of_intensity():
    x = np.full((20000,), 64, np.uint8)
    b = pipeline.binarize_fixed(x, 0)
    assert abs(b.mean() - 64 / 255) < 0.01
    np.testing.assert_array_equal(b, pipeline.binarize_fixed(x, 0))


def test_bad_binarize_value():
    with pytest.raises(ConfigError, match="binarize"):
        _data("sometimes")


def test_data_settings_defaults_and_errors_name_the_key():
    import ml_collections

    from argen_jax.config_lib import typed
    from argen_jax.data import batch
    from argen_jax.data.audio import AudioDataSettings
    from argen_jax.data.images import ImageDataSettings
    from argen_jax.data.patches import PatchDataSettings
    from argen_jax.data.tokens import TokenDataSettings

    d = pipeline.build_image_data(ml_collections.ConfigDict({"name": "digits",
                                                             "batch_size": 32}), 0)
    assert d.eval_batch_size == 32  # eval_batch_size 0: the training batch
    assert isinstance(d, pipeline.DataBuilder)
    assert set(d.train_batch(0)) == {batch.IMAGE, batch.LABEL, batch.MASK}
    with pytest.raises(ConfigError, match="data.binarise"):
        typed(ImageDataSettings, {"binarise": "dynamic"}, "data")
    with pytest.raises(ConfigError, match="data.binarize"):
        typed(ImageDataSettings, {"binarize": "half"}, "data")
    with pytest.raises(ConfigError, match="data.tfds_name"):
        ImageDataSettings(name="tfds")
    with pytest.raises(ConfigError, match="data.batch_size"):
        PatchDataSettings(batch_size=0)
    with pytest.raises(ConfigError, match="data.kind"):
        TokenDataSettings(kind="image")
    with pytest.raises(ConfigError, match="n_fft >= hop"):
        AudioDataSettings(hop=200, n_fft=100)
    assert AudioDataSettings(hop=80).format().n_fft == 320  # n_fft 0: 4 * hop
    # a section with every field, only the differences given
    from argen_jax.config_lib import section

    s = section(PatchDataSettings, batch_size=8)
    assert s.kind == "photo_patches" and s.batch_size == 8 and s.train_photos


def test_audio_spec_round_trips_through_the_run_directory(tmp_path):
    from argen_jax.data.builders import load_spec
    from argen_jax.io.run_dir import save_spec

    spec = pipeline.DataSpec((400,), 256, 2, "audio", sample_rate=8000, hop=40, n_fft=160,
                             n_mels=8, source="/data/speech")
    save_spec(spec, str(tmp_path))
    assert load_spec(str(tmp_path)) == spec


def test_a_cut_wav_file_is_a_one_line_data_error_naming_it(tmp_path):
    from argen_jax.data.audio import read_wav, write_wav

    path = write_wav(str(tmp_path / "a.wav"), np.zeros(800, np.float32), 8000)
    assert read_wav(path)[1] == 8000
    with open(path, "r+b") as f:
        f.truncate(30)  # inside the fmt chunk
    with pytest.raises(DataError, match=r"cannot read WAV file '.*a.wav' \(damaged or trunc"):
        read_wav(path)
    with pytest.raises(DataError, match="does not exist"):
        read_wav(str(tmp_path / "missing.wav"))
