"""End to end on a tiny ImageNet-layout folder of JPEGs of mixed sizes: the tokenizer of
experiments/tokenizer/imagenet.py:tiny (data.kind='image_folder') -> tokenize_dataset.py ->
LlamaGen experiments/llamagen/imagenet.py:tiny on the token file -> a decoded sample grid."""
import json
import os

import numpy as np
import pytest

from argen_jax.data.image_folder import make_synthetic_folder
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
