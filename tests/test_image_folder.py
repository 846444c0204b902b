"""Image folders (data/image_folder.py) and the grain loader (data/grain_loader.py) on a tiny
synthetic ImageNet-layout folder."""
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from argen_jax import config_lib
from argen_jax.data import image_folder as imf
from argen_jax.data import preprocess
from argen_jax.data.grain_loader import GrainLoader, example_seed
from argen_jax.data.synthetic import make_synthetic_folder
from argen_jax.errors import ConfigError, DataError

PHOTOS = ("chelsea", "coffee", "astronaut")  # skimage photos: load fast


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imagefolder"))
    counts = make_synthetic_folder(root, classes=3, per_class=6, val_per_class=2, seed=0,
                                       min_side=40, max_side=90, photos=PHOTOS)
    assert counts == {"train": 18, "val": 6}
    return root


def _write(path, arr, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path, fmt)


def _img(seed, h=20, w=30, mode_channels=3):
    shape = (h, w, mode_channels) if mode_channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def _train_transform(res=16):
    return imf.ImageTransform(res, "random_crop", flip=True)


def _equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --------------------------------------------------------------------------- synthetic folder
def test_synthetic_folder_layout_sizes_and_determinism(folder, tmp_path):
    assert sorted(os.listdir(folder)) == ["train", "val"]
    classes = sorted(os.listdir(os.path.join(folder, "train")))
    assert classes == ["n00000000", "n00000001", "n00000002"]
    files = sorted(os.listdir(os.path.join(folder, "train", classes[1])))
    assert files == [f"n00000001_{i:06d}.JPEG" for i in range(6)]
    sizes = set()
    for c in classes:
        for f in os.listdir(os.path.join(folder, "train", c)):
            with Image.open(os.path.join(folder, "train", c, f)) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                assert 40 <= min(im.size) and max(im.size) <= 90
                sizes.add(im.size)
    assert len(sizes) > 5  # random sizes
    a, b, c = (str(tmp_path / n) for n in "abc")
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        make_synthetic_folder(out, 1, 2, seed=seed, min_side=30, max_side=40,
                                  photos=PHOTOS[:1])
    rel = "train/n00000000/n00000000_000001.JPEG"
    read = lambda d: open(os.path.join(d, rel), "rb").read()
    assert read(a) == read(b) != read(c)


# --------------------------------------------------------------------------- source
def test_source_classes_labels_and_items(folder):
    src = imf.ImageFolderSource(folder, "train")
    assert len(src) == 18 and src.num_classes == 3
    assert src.classes == ("n00000000", "n00000001", "n00000002")
    np.testing.assert_array_equal(src.labels, np.repeat(np.arange(3), 6))
    im, label = src[7]
    assert isinstance(im, Image.Image) and im.mode == "RGB" and label == 1
    assert src.path(7).endswith("train/n00000001/n00000001_000001.JPEG")
    val = imf.ImageFolderSource(folder, "val", classes=src.classes)
    np.testing.assert_array_equal(val.labels, [0, 0, 1, 1, 2, 2])
    with pytest.raises(IndexError):
        src[18]


def test_source_is_lazy_mixed_formats_and_damaged_file(tmp_path):
    root = str(tmp_path)
    _write(f"{root}/train/b/x.png", _img(0))
    _write(f"{root}/train/b/y.webp", _img(1), "WEBP")
    _write(f"{root}/train/a/z.JPG", _img(2), "JPEG")
    _write(f"{root}/train/a/grey.jpeg", _img(3, mode_channels=1), "JPEG")
    open(f"{root}/train/a/notes.txt", "w").write("not an image")
    open(f"{root}/train/a/.hidden.jpg", "w").write("hidden")
    open(f"{root}/train/b/broken.jpg", "wb").write(b"\xff\xd8\xff garbage")
    src = imf.ImageFolderSource(root, "train")  # nothing is decoded here
    names = [os.path.basename(src.path(i)) for i in range(len(src))]
    assert names == ["grey.jpeg", "z.JPG", "broken.jpg", "x.png", "y.webp"]
    np.testing.assert_array_equal(src.labels, [0, 0, 1, 1, 1])
    assert src[0][0].mode == "RGB" and src[0][0].size == (30, 20)  # grey -> RGB
    np.testing.assert_array_equal(np.asarray(src[3][0]), _img(0))  # png is lossless
    with pytest.raises(DataError, match=r"damaged image .*broken\.jpg") as e:
        src[2]
    assert "\n" not in str(e.value)


def test_source_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        imf.ImageFolderSource(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="has no 'train' folder"):
        imf.ImageFolderSource(str(tmp_path))
    os.makedirs(tmp_path / "train" / "empty_class")
    with pytest.raises(DataError, match="no images"):
        imf.ImageFolderSource(str(tmp_path))
    _write(str(tmp_path / "val" / "a.png"), _img(0))
    with pytest.raises(DataError, match="no labels file"):
        imf.ImageFolderSource(str(tmp_path), "val")
    _write(str(tmp_path / "train" / "extra" / "a.png"), _img(0))
    with pytest.raises(DataError, match="class folders that the label classes lack"):
        imf.ImageFolderSource(str(tmp_path), "train", classes=("empty_class",))


def test_flat_val_with_labels_files(tmp_path):
    root = str(tmp_path)
    for c in ("n01", "n02"):
        _write(f"{root}/train/{c}/a.png", _img(0))
    for i in range(3):
        _write(f"{root}/val/ILSVRC2012_val_{i:08d}.JPEG", _img(i), "JPEG")
    # Kaggle's LOC_val_solution.csv in the root: header, names without extension
    with open(f"{root}/LOC_val_solution.csv", "w") as f:
        f.write("ImageId,PredictionString\n")
        f.write("ILSVRC2012_val_00000002,n01 1 2 3 4 n01 5 6 7 8\n")
        f.write("ILSVRC2012_val_00000000,n02 1 2 3 4\n")
        f.write("ILSVRC2012_val_00000001,n01 1 2 3 4\n")
    classes = imf.ImageFolderSource(root, "train").classes
    val = imf.ImageFolderSource(root, "val", classes=classes)
    np.testing.assert_array_equal(val.labels, [1, 0, 0])
    # an explicit labels file with integer labels wins over the csv
    with open(f"{root}/val/my_labels.txt", "w") as f:
        f.write("# file label\nILSVRC2012_val_00000000.JPEG 0\nILSVRC2012_val_00000001.JPEG 1\n"
                "ILSVRC2012_val_00000002.JPEG 1\n")
    val = imf.ImageFolderSource(root, "val", classes=classes, labels_file="my_labels.txt")
    np.testing.assert_array_equal(val.labels, [0, 1, 1])
    with open(f"{root}/val/bad.txt", "w") as f:
        f.write("ILSVRC2012_val_00000000 n09\n")
    with pytest.raises(DataError, match="no label for"):
        imf.ImageFolderSource(root, "val", classes=classes, labels_file="bad.txt")
    with pytest.raises(DataError, match="not found"):
        imf.ImageFolderSource(root, "val", labels_file="missing.txt")


# --------------------------------------------------------------------------- grain loader
def test_loader_epochs_and_resume_mid_epoch(folder):
    src = imf.ImageFolderSource(folder, "train")
    tf = _train_transform()
    run = GrainLoader(src, tf, 4, seed=3, num_threads=2, prefetch=3)  # 4 steps per epoch
    assert run.steps_per_epoch == 4
    uninterrupted = [run.batch(k) for k in range(10)]
    run.close()
    epoch0 = np.concatenate([run.global_indices(k) for k in range(4)])
    assert len(set(epoch0.tolist())) == 16  # each example at most once per epoch
    b = uninterrupted[2]
    assert b["image"].shape == (4, 16, 16, 3) and b["image"].dtype == np.uint8
    assert b["label"].dtype == np.int32 and b["mask"].dtype == np.float32
    np.testing.assert_array_equal(b["label"], src.labels[run.global_indices(2)])
    # a resumed run (new loader, new process) starting mid-epoch sees the same batches
    resumed = GrainLoader(src, tf, 4, seed=3, num_threads=1, prefetch=1)
    for k in range(6, 10):
        _equal(resumed.batch(k), uninterrupted[k])
    resumed.close()
    direct = GrainLoader(src, tf, 4, seed=3, prefetch=0)  # no pipeline: the pure function
    for k in (9, 1, 5):  # any order
        _equal(direct.batch(k), uninterrupted[k])
    other = GrainLoader(src, tf, 4, seed=4, prefetch=0)
    assert not np.array_equal(other.batch(1)["image"], uninterrupted[1]["image"])


def test_loader_process_slices(folder):
    src = imf.ImageFolderSource(folder, "train")
    tf = _train_transform()
    glob = GrainLoader(src, tf, 6, seed=1, prefetch=0)
    procs = [GrainLoader(src, tf, 6, seed=1, process_index=p, process_count=2, prefetch=2)
             for p in range(2)]
    for k in range(5):  # crosses the epoch boundary (3 steps per epoch)
        parts = [p.batch(k) for p in procs]
        assert set(procs[0].local_indices(k)).isdisjoint(procs[1].local_indices(k))
        assert parts[0]["image"].shape[0] == 3
        _equal({key: np.concatenate([q[key] for q in parts]) for key in parts[0]},
               glob.batch(k))
    for p in procs:
        p.close()
    # evaluation order: every example once, last batch padded, slices per process
    ev = [GrainLoader(src, imf.ImageTransform(8), 8, process_index=p, process_count=2,
                      shuffle=False, prefetch=1) for p in range(2)]
    batches = [list(e) for e in ev]
    assert ev[0].num_batches == 3 and all(len(b) == 3 for b in batches)
    masks = np.concatenate([np.concatenate([b[k]["mask"] for b in batches]) for k in range(3)])
    labels = np.concatenate([np.concatenate([b[k]["label"] for b in batches]) for k in range(3)])
    assert masks.sum() == 18 and masks[18:].sum() == 0
    np.testing.assert_array_equal(labels[:18], src.labels)
    with pytest.raises(ConfigError, match="multiple of the process count"):
        GrainLoader(src, tf, 5, process_count=2)


def test_loader_workers_equal_no_workers(folder):
    src = imf.ImageFolderSource(folder, "train")
    tf = _train_transform()
    ref = GrainLoader(src, tf, 4, seed=2, prefetch=0)
    with GrainLoader(src, tf, 4, seed=2, worker_count=2, prefetch=1) as workers:
        for k in range(3, 8):
            _equal(workers.batch(k), ref.batch(k))


def test_example_seeds_do_not_depend_on_slicing():
    seeds = {example_seed(0, s, j) for s in range(3) for j in range(4)}
    assert len(seeds) == 12 and example_seed(0, 1, 2) == example_seed(0, 1, 2)


# --------------------------------------------------------------------------- builder
def _cfg(folder, **kw):
    d = config_lib.section(imf.ImageFolderSettings, path=folder, resolution=16, batch_size=4,
                           eval_batch_size=4, **kw)
    d.kind = "image_folder"
    return d


def test_build_image_folder_data_end_to_end(folder):
    data = imf.build_image_folder_data(_cfg(folder), seed=0)
    assert data.spec.shape == (16, 16, 3) and data.spec.levels == 256
    assert data.spec.num_classes == 3 and data.spec.kind == "image"
    b = data.train_batch(5)
    assert b["image"].shape == (4, 16, 16, 3) and b["image"].dtype == np.uint8
    assert b["label"].shape == (4,) and b["label"].dtype == np.int32
    np.testing.assert_array_equal(b["mask"], np.ones(4, np.float32))
    again = imf.build_image_folder_data(_cfg(folder), seed=0)
    _equal(again.train_batch(5), b)
    data.close()
    again.close()
    evals = list(data.eval_batches())
    assert [e["mask"].tolist() for e in evals] == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert np.concatenate([e["label"] for e in evals])[:6].tolist() == [0, 0, 1, 1, 2, 2]
    first = preprocess.center_crop_arr(data.test_set[0][0], 16)
    np.testing.assert_array_equal(evals[0]["image"][0], first)
    small = imf.build_image_folder_data(
        _cfg(folder, train_limit=5, test_limit=3, conditional=False,
             train_transform="center_crop", flip=False, prefetch=0), seed=0)
    assert len(small.train_set) == 5 and len(small.test_set) == 3
    assert small.spec.num_classes == 0
    assert sorted(set(small.train_set.labels.tolist())) == [0, 1, 2]  # spread over classes


def test_settings_errors(folder):
    cfg = _cfg("")
    with pytest.raises(ConfigError, match="data.path is empty"):
        imf.build_image_folder_data(cfg, 0)
    with pytest.raises(ConfigError, match="data.train_transform"):
        imf.build_image_folder_data(_cfg(folder, train_transform="resize"), 0)
    cfg = _cfg(folder)
    cfg.crop_size = 3
    with pytest.raises(ConfigError, match="data.crop_size"):
        imf.build_image_folder_data(cfg, 0)
    with pytest.raises(ConfigError, match="min_crop_frac"):
        config_lib.section(imf.ImageFolderSettings, min_crop_frac=0.9, max_crop_frac=0.8)
    with pytest.raises(ConfigError, match="data.worker_count"):
        imf.ImageFolderSettings(worker_count=-1)
    with pytest.raises(DataError, match="does not exist"):
        imf.build_image_folder_data(ml_collections.ConfigDict(
            {"kind": "image_folder", "path": folder + "/nope"}), 0)


def test_make_image_folder_cli(tmp_path, capsys):
    from experiments.data import make_image_folder

    out = str(tmp_path / "cli")
    make_image_folder.main([f"--out={out}", "--classes=2", "--per_class=2",
                            "--val_per_class=1", "--min_side=30", "--max_side=40"])
    assert "wrote 4 train and 2 val images" in capsys.readouterr().out
    assert len(imf.ImageFolderSource(out, "val")) == 2
    with pytest.raises(SystemExit, match="error: need classes >= 1"):
        make_image_folder.main([f"--out={out}", "--classes=0", "--per_class=2"])


# --------------------------------------------------------------------------- TFDS, lazily
def test_tfds_source_reads_only_the_records_asked_for(monkeypatch):
    """data.tfds_name: records are read one by one through tfds.data_source (TFDS's mock
    data here); building the data and a batch reads exactly that batch's records."""
    import pickle

    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.data_sources import array_record

    from argen_jax.data.tfds_source import TfdsImageSource

    read = []
    original = array_record.ArrayRecordDataSource.__getitem__

    def recording(self, i):
        read.append(int(i))
        return original(self, i)

    monkeypatch.setattr(array_record.ArrayRecordDataSource, "__getitem__", recording)
    with tfds.testing.mock_data(num_examples=40):
        cfg = config_lib.section(imf.ImageFolderSettings, tfds_name="cifar10", test_split="test",
                                 resolution=16, batch_size=4, eval_batch_size=4, test_limit=6,
                                 prefetch=0)  # no read-ahead: only what is asked for
        data = imf.ImageFolderData(cfg, seed=3)
        assert read == [] and len(data.train_set) == 40 and data.spec.num_classes == 10
        assert data.spec.shape == (16, 16, 3)
        batch = data.train_loader(1, 2)(5)  # process 1 of 2: rows [2, 4) of step 5's batch
        assert batch["image"].shape == (2, 16, 16, 3) and batch["image"].dtype == np.uint8
        assert sorted(read) == sorted(data.train_loader().global_indices(5)[2:].tolist())
        read.clear()
        evals = list(data.eval_batches())  # the 6-record spread subset, centre-cropped
        assert len(evals) == 2 and sum(b["mask"].sum() for b in evals) == 6
        assert len(set(read)) == 6
        src = TfdsImageSource("cifar10", "train")
        clone = pickle.loads(pickle.dumps(src))  # as sent to a grain worker: reopens lazily
        assert clone._src is None and len(clone) == 40
        im, label = clone[7]
        np.testing.assert_array_equal(np.asarray(im), np.asarray(src[7][0]))
        assert label == src[7][1]
        with pytest.raises(DataError, match="no 'pixels' feature"):
            TfdsImageSource("cifar10", "train", image_key="pixels")


def test_tfds_settings_errors():
    with pytest.raises(ConfigError, match="not both"):
        config_lib.section(imf.ImageFolderSettings, path="/data", tfds_name="imagenet2012")
    with pytest.raises(DataError, match="'no_such_dataset_xyz'.*could not be opened"):
        imf.ImageFolderData(config_lib.section(imf.ImageFolderSettings,
                                               tfds_name="no_such_dataset_xyz"))


def _damaged_folder(root):
    for c in ("a", "b"):
        for k in range(4):
            _write(f"{root}/train/{c}/{k}.png", _img(10 * ord(c) + k))
    open(f"{root}/train/a/2.png", "wb").write(b"\x89PNG garbage")
    return root


def test_skip_damaged_counts_logs_and_substitutes(tmp_path, caplog):
    root = _damaged_folder(str(tmp_path))
    strict = imf.ImageFolderSource(root, "train")
    with pytest.raises(DataError, match=r"damaged image .*a/2\.png"):
        strict[2]
    src = imf.ImageFolderSource(root, "train", skip_damaged=True)
    with caplog.at_level("WARNING"):
        image, label = src[2]  # the next readable image, with its own label
        src[2]
    np.testing.assert_array_equal(np.asarray(image), _img(10 * ord("a") + 3))
    assert label == 0
    assert os.path.join(root, "train/a/2.png") in imf.damaged_files()
    logged = [r.getMessage() for r in caplog.records if "a/2.png" in r.getMessage()]
    assert len(logged) == 1 and "skipped so far" in logged[0]  # once per file, counted
    data = imf.build_image_folder_data(
        _cfg(root, skip_damaged=True, val_fraction=0.25, prefetch=0), 0)
    assert all(data.train_set[i][0].size == (30, 20) for i in range(len(data.train_set)))
    for step in range(4):
        assert data.train_batch(step)["image"].shape == (4, 16, 16, 3)


def test_val_fraction_holds_out_part_of_train(tmp_path):
    root = _damaged_folder(str(tmp_path))
    with pytest.raises(DataError, match="data.val_fraction"):  # the hint names the setting
        imf.build_image_folder_data(_cfg(root), 0)
    data = imf.build_image_folder_data(_cfg(root, val_fraction=0.25, prefetch=0), 0)
    assert len(data.train_set) == 6 and len(data.test_set) == 2
    assert sorted(data.test_set.labels.tolist()) == [0, 1]  # spread over the classes
    assert not set(data.train_set.indices) & set(data.test_set.indices)
    again = imf.build_image_folder_data(_cfg(root, val_fraction=0.25, prefetch=0), 0)
    assert again.test_set.indices.tolist() == data.test_set.indices.tolist()
    os.makedirs(f"{root}/val/a")
    with pytest.raises(ConfigError, match="use one or the other"):
        imf.build_image_folder_data(_cfg(root, val_fraction=0.25), 0)
    with pytest.raises(ConfigError, match="data.val_fraction"):
        imf.ImageFolderSettings(val_fraction=1.0)


def test_check_lists_every_unreadable_file_in_parallel(tmp_path):
    import subprocess
    import sys

    from argen_jax.data import check

    root = _damaged_folder(str(tmp_path / "f"))
    open(f"{root}/train/b/3.png", "wb").write(b"")  # empty
    os.makedirs(f"{root}/val")
    _write(f"{root}/val/v.png", _img(99))
    got = check.check_folder(root, workers=2)
    assert got["files"] == 9 and len(got["damaged"]) == 2
    assert "a/2.png" in got["damaged"][0] and "b/3.png" in got["damaged"][1]
    assert check.check_folder(root, workers=1)["damaged"] == got["damaged"]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(check.__file__))))}  # this checkout's argen_jax
    out = subprocess.run([sys.executable, "-m", "argen_jax.data.check", f"--path={root}"],
                         capture_output=True, text=True, timeout=120, env=env)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 3 and '"damaged": 2' in lines[-1]
    missing = subprocess.run([sys.executable, "-m", "argen_jax.data.check",
                              f"--path={root}/nope"], capture_output=True, text=True,
                             timeout=120, env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("error: image folder")


def test_a_batch_function_unpickled_in_a_worker_ignores_ctrl_c(folder):
    """grain workers get Ctrl-C too (same process group): they ignore it, so the training
    process saves and stops (exit 75) instead of meeting a dead worker."""
    import pickle
    import signal
    from unittest import mock

    from argen_jax.data.grain_loader import _BatchFn

    fn = _BatchFn(imf.ImageFolderSource(folder), _train_transform(), 4, 0, 0, 1, True)
    before = signal.getsignal(signal.SIGINT)
    try:
        _equal(pickle.loads(pickle.dumps(fn))(3), fn(3))  # a copy in this process
        assert signal.getsignal(signal.SIGINT) == before  # leaves this process's Ctrl-C
        with mock.patch("multiprocessing.parent_process", lambda: object()):
            pickle.loads(pickle.dumps(fn))  # what a worker process does
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
