"""End to end on a tiny ImageNet-layout folder of JPEGs of mixed sizes: the tokenizer of
experiments/tokenizer/imagenet.py:tiny (data.kind='image_folder') -> tokenize_dataset.py ->
LlamaGen experiments/llamagen/imagenet.py:tiny on the token file -> a decoded sample grid."""
import json
import os

import numpy as np
import pytest

from argen_jax.data.synthetic import make_synthetic_folder
from experiments.llamagen import imagenet as llamagen_imagenet
from experiments.tokenizer import imagenet as tokenizer_imagenet
from experiments.var import imagenet as var_imagenet


def _rows(workdir, key):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if key in r]


def test_imagenet_configs_have_the_papers_settings():
    c = tokenizer_imagenet.get_config()
    assert (c.data.kind, c.data.resolution, c.data.batch_size) == ("image_folder", 256, 128)
    assert (c.model.codebook_size, c.model.code_dim, c.train.lr) == (16384, 8, 1e-4)
    assert tokenizer_imagenet.get_config("512").data.resolution == 512
    v = tokenizer_imagenet.get_config("var,512")
    assert v.model.quantizer == "multiscale" and v.model.scales[-1] == 512 // 16
    g = llamagen_imagenet.get_config("XL")
    assert (g.model.size, g.data.batch_size, g.train.lr) == ("XL", 256, 1e-4)
    d = var_imagenet.get_config("d30")
    assert (d.model.depth, d.data.batch_size) == (30, 1024)
    assert d.train.lr == pytest.approx(8e-5 * 1024 / 256)
    with pytest.raises(ValueError):
        llamagen_imagenet.get_config("B,L")


@pytest.mark.slow
def test_folder_to_tokenizer_to_tokens_to_llamagen(tmp_path):
    from argen_jax.train import loop
    from experiments.tokenizer import tokenize_dataset

    folder = str(tmp_path / "images")
    make_synthetic_folder(folder, classes=3, per_class=6, val_per_class=2, min_side=36,
                          max_side=80, photos=("astronaut", "coffee", "chelsea"))
    c = tokenizer_imagenet.get_config("tiny")
    c.data.path = folder
    c.train.num_steps, c.train.log_every = 3, 1
    tok_dir = str(tmp_path / "tok")
    loop.train(c, tok_dir)
    train = _rows(tok_dir, "train/loss")
    assert len(train) == 3 and all(np.isfinite(r["train/loss"]) for r in train)
    assert np.isfinite(_rows(tok_dir, "eval/psnr")[-1]["eval/psnr"])

    out = str(tmp_path / "tokens.npz")
    tokenize_dataset.tokenize(tok_dir, out, batch_size=8, png=str(tmp_path / "recon.png"))
    with np.load(out) as f:
        assert f["train_tokens"].shape == (18, 8 * 8)  # 32px / 4 -> 8x8 map
        assert f["test_tokens"].shape == (6, 64)
        np.testing.assert_array_equal(f["train_labels"], np.repeat([0, 1, 2], 6))
        np.testing.assert_array_equal(f["test_labels"], np.repeat([0, 1, 2], 2))
        np.testing.assert_array_equal(f["token_shape"], [8, 8])
        assert int(f["train_tokens"].max()) < int(f["codebook_size"]) == 64
    assert os.path.getsize(tmp_path / "recon.png") > 0

    g = llamagen_imagenet.get_config("tiny")
    g.data.path = out
    g.train.num_steps, g.train.log_every = 3, 1
    g_dir = str(tmp_path / "llamagen")
    loop.train(g, g_dir)
    train = _rows(g_dir, "train/loss")
    assert len(train) == 3 and all(np.isfinite(r["train/loss"]) for r in train)
    from PIL import Image

    grid = np.asarray(Image.open(os.path.join(g_dir, "samples", "step_0000003.png")))
    assert grid.shape[0] >= 32 and grid.shape[1] >= 3 * 32 and grid.std() > 1.0


@pytest.mark.slow
def test_two_processes_read_their_own_rows_of_an_image_folder(tmp_path):
    """launch/local_multiprocess.sh 2 4: each process decodes only its half of every batch
    (rows [0, 4) and [4, 8) of 8) and the loop assembles the global batch from the halves,
    so the losses equal this process's 8-device run of the same config."""
    import subprocess
    import sys

    from argen_jax.train import loop

    folder = str(tmp_path / "images")
    make_synthetic_folder(folder, classes=2, per_class=8, val_per_class=4, min_side=36,
                          max_side=80, photos=("astronaut", "coffee"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mp_dir = tmp_path / "mp"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.Popen(
        ["bash", os.path.join(root, "launch/local_multiprocess.sh"), "2", "4", str(mp_dir),
         "--", "--config=experiments/tokenizer/imagenet.py:tiny", f"--config.data.path={folder}",
         "--config.train.num_steps=2", "--config.train.log_every=1", f"--workdir={mp_dir / 'w'}"],
        cwd=root, env={**env, "PYTHON": sys.executable}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    c = tokenizer_imagenet.get_config("tiny")  # meanwhile: the same run in this process
    c.data.path = folder
    c.train.num_steps, c.train.log_every = 2, 1
    loop.train(c, str(tmp_path / "single"))
    out, _ = proc.communicate(timeout=300)
    logs = [open(mp_dir / f"process_{i}.log").read() for i in range(2)]
    assert proc.returncode == 0, out + "".join(log[-2000:] for log in logs)
    for i, log in enumerate(logs):
        assert f"data: process {i} of 2 reads rows [{4 * i}, {4 * i + 4}) of each batch of 8" \
            in log, log[-2000:]
    for key in ("train/loss", "eval/mse"):
        multi = [r[key] for r in _rows(str(mp_dir / "w"), key)]
        single = [r[key] for r in _rows(str(tmp_path / "single"), key)]
        assert len(multi) == len(single) > 0
        np.testing.assert_allclose(multi, single, rtol=2e-5, err_msg=key)
