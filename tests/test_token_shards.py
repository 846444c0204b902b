"""The sharded token store (data/token_shards.py) and tokenize_dataset.py --shards: written in
fixed-size shards by a resumable multi-process job, read lazily through memory maps."""
import json
import os
import types

import ml_collections
import numpy as np
import pytest

from argen_jax.data import token_shards as ts
from argen_jax.data.images import ImageSet
from argen_jax.data.tokens import build_token_data
from argen_jax.errors import ConfigError, DataError
from experiments.tokenizer import tokenize_dataset as td

K = 16


class FakeTokenizer:
    """Deterministic per-image 'encoding': 4x4 block means of an 8x8 image, mod K."""

    multiscale, scales, codebook_size, step = False, None, K, 3
    token_shapes = [(4, 4)]

    def __init__(self):
        self.calls = 0

    def encode(self, images):
        self.calls += 1
        x = np.asarray(images, np.int64)[..., 0]
        h, w = x.shape[1:]
        return x.reshape(len(x), 4, h // 4, 4, w // 4).sum((2, 4)) % K


def _data(n_train=30, n_test=12):
    rng = np.random.default_rng(0)

    def split(n):
        return ImageSet(rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8),
                        rng.integers(0, 3, n).astype(np.int32), 3)

    return types.SimpleNamespace(train_set=split(n_train), test_set=split(n_test))


def _write(directory, data=None, **kw):
    kw = {"batch_size": 4, "shard_size": 7, "progress": False, **kw}
    return td.write_token_shards(FakeTokenizer(), data or _data(), str(directory), **kw)


def _files(directory):
    return {f: open(os.path.join(directory, f), "rb").read()
            for f in sorted(os.listdir(directory))}


def _npz(path, data):
    tok = FakeTokenizer()
    arrays = {}
    for split, s in (("train", data.train_set), ("test", data.test_set)):
        arrays[f"{split}_tokens"] = td.encode_images(tok, s.images, 4)
        arrays[f"{split}_labels"] = s.labels
    np.savez(path, token_shape=np.asarray([4, 4]), scales=np.asarray([4]),
             codebook_size=np.int32(K), multiscale=np.bool_(False), **arrays)
    return str(path)


def test_write_and_read_equal_the_npz_content(tmp_path):
    data = _data()
    out = _write(tmp_path / "s", data)
    assert out["complete"] and out["written"] == 5 + 2 and out["skipped"] == 0
    index = ts.read_index(str(tmp_path / "s"))
    assert index["splits"]["train"]["num_shards"] == 5 and index["token_length"] == 16
    assert index["stats"]["test"]["num_examples"] == 12
    with np.load(_npz(tmp_path / "t.npz", data)) as f:
        for split in ("train", "test"):
            s = ts.TokenShardSplit(str(tmp_path / "s"), split)
            np.testing.assert_array_equal(s[:], f[f"{split}_tokens"])
            np.testing.assert_array_equal(s.labels, f[f"{split}_labels"])
            idx = np.array([5, 0, 6, 7, len(s) - 1, 3])
            np.testing.assert_array_equal(s[idx], f[f"{split}_tokens"][idx])
            np.testing.assert_array_equal(s[-1], f[f"{split}_tokens"][-1])


def test_reader_memory_maps_the_shards(tmp_path):
    _write(tmp_path / "s")
    s = ts.TokenShardSplit(str(tmp_path / "s" / "index.json"), "train")
    assert len(s._tokens) == 5 and all(isinstance(m, np.memmap) for m in s._tokens)
    assert all(not m.flags.writeable for m in s._tokens)
    assert s.limit(10).shape == (10, 16) and len(s.limit(10)._tokens) == 2


def test_killed_job_restarted_writes_the_same_shards(tmp_path):
    _write(tmp_path / "a")
    ref = _files(tmp_path / "a")
    b = tmp_path / "b"
    _write(b)
    # killed half-way: shards 3, 4 of train never written, shard 1 truncated, a temp file left
    for k in (3, 4):
        os.remove(ts.shard_path(str(b), "train", k, "tokens"))
    os.remove(ts.shard_path(str(b), "test", 1, "labels"))
    path = ts.shard_path(str(b), "train", 1, "tokens")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 10])
    open(path + ".tmp123", "wb").write(b"partial")
    index = ts.read_index(str(b))
    open(os.path.join(b, "index.json"), "w").write(
        __import__("json").dumps(dict(index, complete=False)))
    with pytest.raises(DataError, match="missing or incomplete"):
        ts.TokenShardSplit(str(b), "train")
    out = _write(b)
    assert out["written"] == 4 and out["skipped"] == 3 and out["complete"]
    assert _files(b) == ref
    assert _write(b)["written"] == 0  # nothing left to do


def test_two_processes_write_disjoint_shards_whose_union_is_the_split(tmp_path):
    _write(tmp_path / "one")
    ref = _files(tmp_path / "one")
    d = tmp_path / "two"
    p0 = _write(d, process_index=0, process_count=2)
    assert not p0["complete"] and p0["written"] == 3 + 1
    assert p0["waiting_for"] == ("this process's shards are done; the store completes when "
                                 "process(es) 1 of 2 write their 3 remaining shard(s) (train: "
                                 "[1, 3]; test: [1])")
    mine = {f for f in os.listdir(d) if f.endswith(".tokens.npy")}
    assert mine == {f"train_{k:05d}.tokens.npy" for k in (0, 2, 4)} | {"test_00000.tokens.npy"}
    p1 = _write(d, process_index=1, process_count=2)
    assert p1["complete"] and p1["written"] == 2 + 1
    assert _files(d) == ref


def test_a_different_job_in_the_same_directory_is_refused(tmp_path):
    _write(tmp_path / "s")
    with pytest.raises(DataError, match="shard_size"):
        _write(tmp_path / "s", shard_size=5)
    with pytest.raises(ConfigError, match="process_index"):
        _write(tmp_path / "x", process_index=2, process_count=2)


def test_flip_augmentation_is_drawn_per_example_from_seed_step_index(tmp_path):
    data = _data()
    _write(tmp_path / "s", data, augment="flip")
    s = ts.TokenShardSplit(str(tmp_path / "s"), "train")
    assert s._tokens[0].shape == (7, 2, 16) and s.num_augmentations == 2
    test = ts.TokenShardSplit(str(tmp_path / "s"), "test")
    assert test._tokens[0].ndim == 2  # the test split stores centre crops only
    plain = td.encode_images(FakeTokenizer(), data.train_set.images, 4)
    flipped = td.encode_images(FakeTokenizer(), data.train_set.images[:, :, ::-1], 4)
    np.testing.assert_array_equal(s[:], plain)  # default: the un-flipped maps
    idx = np.arange(30)
    a = s.augmentations(idx, step=5, seed=1)
    assert 0 < a.sum() < 30
    np.testing.assert_array_equal(a, s.augmentations(idx[::-1], 5, 1)[::-1])
    assert (a != s.augmentations(idx, 6, 1)).any() and (a != s.augmentations(idx, 5, 2)).any()
    got = s.train_take(idx, 5, 1)
    np.testing.assert_array_equal(got, np.where(a[:, None] == 1, flipped, plain))


def test_tencrop_needs_an_image_folder(tmp_path):
    with pytest.raises(ConfigError, match="image-folder"):
        _write(tmp_path / "s", augment="tencrop")


def test_tencrop_of_an_image_folder_stores_ten_maps_per_image(tmp_path):
    from argen_jax.data import preprocess
    from argen_jax.data.image_folder import ImageFolderSource
    from argen_jax.data.synthetic import make_synthetic_folder

    make_synthetic_folder(str(tmp_path / "f"), classes=2, per_class=3, val_per_class=2,
                          min_side=30, max_side=50)
    train = ImageFolderSource(str(tmp_path / "f"), "train")
    data = types.SimpleNamespace(train_set=train, settings=types.SimpleNamespace(resolution=16),
                                 test_set=ImageFolderSource(str(tmp_path / "f"), "val"))
    out = _write(tmp_path / "s", data, augment="tencrop", shard_size=4)
    assert out["complete"]
    s = ts.TokenShardSplit(str(tmp_path / "s"), "train")
    assert s._tokens[0].shape == (4, 10, 16) and s.default_augmentation == 4
    crops = preprocess.ten_crop_flip_arr(train[5][0], 16)
    want = FakeTokenizer().encode(crops).reshape(10, 16)
    np.testing.assert_array_equal(s._tokens[1][1], want)
    np.testing.assert_array_equal(s[5], want[4])  # the centre crop
    np.testing.assert_array_equal(s.labels, train.labels)
    test = ts.TokenShardSplit(str(tmp_path / "s"), "test")
    centre = preprocess.center_crop_arr(data.test_set[1][0], 16)
    np.testing.assert_array_equal(test[1], FakeTokenizer().encode(centre[None]).reshape(16))


def _cfg(path):
    return ml_collections.ConfigDict({"path": path, "batch_size": 8, "eval_batch_size": 5})


def test_data_kind_tokens_reads_a_shard_directory_like_the_npz(tmp_path):
    data = _data()
    _write(tmp_path / "s", data)
    npz = build_token_data(_cfg(_npz(tmp_path / "t.npz", data)), seed=3)
    for path in (str(tmp_path / "s"), str(tmp_path / "s" / "index.json")):
        sh = build_token_data(_cfg(path), seed=3)
        assert sh.spec == npz.spec
        for step in (0, 1, 3, 7):
            a, b = npz.train_batch(step), sh.train_batch(step)
            assert a.keys() == b.keys() and b["tokens"].dtype == np.int32
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
        for a, b in zip(npz.eval_batches(), sh.eval_batches(), strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    limited = build_token_data(ml_collections.ConfigDict(
        {"path": str(tmp_path / "s"), "batch_size": 4, "train_limit": 9, "test_limit": 5}), 0)
    assert len(limited.train_tokens) == 9 and limited.train_labels.shape == (9,)
    assert len(limited.test_tokens) == 5


def test_cli_damaged_image_is_one_line_exit_2_or_skipped(tmp_path, monkeypatch, capsys):
    """tokenize_dataset.py on a folder with a damaged file: `error: damaged image ...` and
    exit 2 (the launcher's contract), not a traceback; --skip_damaged tokenizes the rest."""
    import sys

    from PIL import Image

    from argen_jax import config_lib
    from argen_jax.data.image_folder import ImageFolderSettings

    for c in ("a", "b"):
        for k in range(3):
            os.makedirs(tmp_path / "f" / "train" / c, exist_ok=True)
            Image.fromarray(np.full((12, 12, 3), 40 * k, np.uint8)).save(
                tmp_path / "f" / "train" / c / f"{k}.png")
    (tmp_path / "f" / "train" / "b" / "1.png").write_bytes(b"\x89PNG damaged")
    data = config_lib.section(ImageFolderSettings, path=str(tmp_path / "f"), resolution=8,
                              batch_size=2, val_fraction=0.3, prefetch=0)
    data.kind = "image_folder"
    config = ml_collections.ConfigDict({"data": data, "seed": 0})
    monkeypatch.setattr(td, "load_config", lambda *a: ml_collections.ConfigDict(config))
    monkeypatch.setattr(td.Tokenizer, "load", staticmethod(lambda w: FakeTokenizer()))
    for extra, code in (([], 2), (["--skip_damaged"], None)):
        monkeypatch.setattr(sys, "argv", ["tokenize_dataset.py", "--workdir=w", "--batch_size=2",
                                          f"--shards={tmp_path / 's'}", *extra])
        try:
            td.main()
            got = None
        except SystemExit as e:
            got = e.code
        out, err = capsys.readouterr()
        assert got == code, err
        if code:
            last = err.strip().splitlines()[-1]  # after the progress bar
            assert last.startswith("error: damaged image ") and "b/1.png" in last
            assert "Traceback" not in err
        else:
            assert json.loads(out.splitlines()[-1])["complete"]
