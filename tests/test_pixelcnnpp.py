"""PixelCNN++: up-sampling taps, causality without blind spot, sampler, a tiny training run."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.errors import ConfigError, DataError
from argen_jax.layers import shifted_conv as sc
from argen_jax.models.pixelcnnpp import PixelCNNPP


def _reference_transpose_reach(kh, kw, stride, col_crop, h=3, w=3):
    """Which low-res pixels a kh x kw stride-s transposed conv (padding VALID, output cropped
    to rows [0, s*h) and columns [col_crop, col_crop + s*w)) adds into each output pixel."""
    reach = {}
    for qi in range(h):
        for qj in range(w):
            for ky in range(kh):
                for kx in range(kw):
                    p, q = stride * qi + ky, stride * qj + kx - col_crop
                    if 0 <= p < stride * h and 0 <= q < stride * w:
                        reach.setdefault((p, q), set()).add((qi, qj))
    return reach


@pytest.mark.parametrize("which", ["down", "down_right"])
def test_up_offsets_match_a_transposed_conv(which):
    kh, kw, crop = (2, 3, 1) if which == "down" else (2, 2, 0)
    fn = sc.down_shifted_up_offsets if which == "down" else sc.down_right_shifted_up_offsets
    phases = fn(kh, kw, 2)
    assert sum(len(p) for p in phases) == kh * kw  # every kernel tap in exactly one phase
    reach = _reference_transpose_reach(kh, kw, 2, crop)
    for (p, q), want in reach.items():
        i, a = divmod(p, 2)
        j, b = divmod(q, 2)
        got = {(i + dy, j + dx) for dy, dx in phases[a * 2 + b]
               if 0 <= i + dy < 3 and 0 <= j + dx < 3}
        assert got == want, (p, q)


def test_transposed_module_shapes_and_params():
    m = sc.ShiftedConvTranspose2D(5, sc.down_shifted_up_offsets(2, 3), 2)
    x = jnp.ones((2, 3, 4, 7))
    v = m.init(jax.random.PRNGKey(0), x)
    y = m.apply(v, x)
    assert y.shape == (2, 6, 8, 5)
    n = sum(a.size for a in jax.tree.leaves(v))
    assert n == 2 * 3 * 7 * 5 + 5  # the same count as a 2x3 transposed conv with one bias


def _dependency(model, variables, h, w, c):
    """dep[i, j, k, l] = d(sum of outputs at (i, j)) / d(input at (k, l)) != 0."""
    x0 = jax.random.uniform(jax.random.PRNGKey(1), (1, h, w, c), minval=-1.0, maxval=1.0)

    def f(x):
        return model.apply(variables, x)[0].sum(-1)  # [H, W]

    jac = jax.jit(jax.jacrev(f))(x0)  # [H, W, 1, H, W, C]
    return np.abs(np.asarray(jac)).sum(axis=(2, 5)) > 0  # [H, W, H, W]


def test_causal_and_no_blind_spot():
    """Output (i, j) depends on no input at or after (i, j) in raster order, and on every
    nearby earlier pixel, including those up and to the right (PixelCNN's blind spot)."""
    h = w = 8
    model = PixelCNNPP(levels=256, channels=3, features=8, num_resnet=2, num_mixtures=2,
                       dropout=0.0)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, h, w, 3), jnp.int32))
    dep = _dependency(model, variables, h, w, 3)
    for i in range(h):
        for j in range(w):
            order = np.arange(h * w).reshape(h, w)
            future = order >= i * w + j
            assert not dep[i, j][future].any(), f"output ({i},{j}) sees the future"
            want = np.zeros((h, w), bool)
            want[max(i - 2, 0) : i, max(j - 3, 0) : j + 4] = True  # two rows above, +-3 cols
            want[i, :j] = True  # the whole row to the left
            if i or j:
                want[0, 0] = True  # the far corner, through the down-sampled path
            missing = want & ~dep[i, j]
            assert not missing.any(), f"output ({i},{j}) misses {np.argwhere(missing)}"


def test_rejects_bad_sides():
    model = PixelCNNPP(channels=1, features=4, num_resnet=1, num_mixtures=1)
    with pytest.raises(ConfigError, match="divisible by 4"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 8, 1), jnp.int32))


def _tiny_patch_config(tmp):
    from experiments.pixelcnnpp.patches import get_config

    c = get_config("tiny")
    c.data.patch_size = 8
    c.data.train_stride = 8
    c.data.train_photos = ("chelsea",)
    c.data.test_photos = ("coffee",)
    c.data.train_limit = 512
    c.data.test_limit = 16
    c.model.num_resolutions = 2
    c.data.batch_size = 8
    c.mesh.num_devices = 1  # compile for one device (sharding is tested in test_train)
    c.data.eval_batch_size = 8
    c.train.num_steps = 40
    c.train.save_every = 40
    c.train.tensorboard = False
    c.train.quiet = True
    c.sample.num = c.sample.batch_size = 8
    return c


def test_patch_split_is_by_photo():
    from argen_jax.data.patches import build_patch_data

    c = _tiny_patch_config(None).data
    d = build_patch_data(c, 0)
    assert d.spec.shape == (8, 8, 3) and d.spec.levels == 256
    c.test_photos = ("chelsea",)
    with pytest.raises(DataError, match="both splits"):
        build_patch_data(c, 0)


def test_photos_from_every_source_and_per_photo_cap():
    from argen_jax.data.patches import load_patches, load_photo

    for name in ("chelsea", "sklearn:china", "matplotlib:grace_hopper"):
        img = load_photo(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3
        assert img.std() > 10  # a real photo, not a blank
    full = load_patches(("chelsea", "sklearn:flower"), 32, 32)
    capped = load_patches(("chelsea", "sklearn:flower"), 32, 32, per_photo=100)
    assert np.bincount(capped.labels).tolist() == [100, 100]
    assert np.bincount(full.labels).min() > 100
    for bad, msg in (("nope", "no photo 'nope'"), ("foo:bar", "unknown photo source 'foo'"),
                     ("sklearn:nope", "could not be loaded")):
        with pytest.raises(DataError, match=msg):
            load_photo(bad)


def test_tiny_training_run_learns_and_samples(tmp_path):
    """Loss falls on real photo patches; held-out bits/dim fall too; the raster
    sampler (the shared scan) writes a grid of valid images."""
    from PIL import Image

    from argen_jax.train import loop

    c = _tiny_patch_config(tmp_path)
    out = loop.train(c, str(tmp_path))
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses[-1] < losses[0] - 0.3
    # 40 steps of a tiny net: held-out bits/dim already below the first logged train bpd
    assert np.isfinite(out["eval/bpd"]) and out["eval/bpd"] < losses[0] / np.log(2.0)
    grid = np.asarray(Image.open(os.path.join(tmp_path, "samples", "step_0000040.png")))
    assert grid.shape == (3 * 9 + 1, 3 * 9 + 1, 3)  # 8 samples of 8x8 in a 3x3 grid
    assert grid.std() > 1.0  # not a blank canvas


def test_cifar10_config_reads_tfds_data_source():
    """The TFDS path real users take (`cifar10.py`), on TFDS's mock data (no download, no
    TensorFlow): the config's data builder gives 32x32x3 8-bit batches with CIFAR's 10
    classes, and the model family accepts the spec."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from argen_jax import registry
    from experiments.pixelcnnpp import cifar10

    c = cifar10.get_config("tiny")
    with tfds.testing.mock_data(num_examples=16):
        data = registry.build_data(c)
        batch = data.train_batch(0)
        evals = list(data.eval_batches())
    assert data.spec.shape == (32, 32, 3) and data.spec.levels == 256
    assert data.spec.num_classes == 10
    assert batch["image"].shape == (c.data.batch_size, 32, 32, 3)
    assert batch["image"].dtype == np.uint8 and batch["image"].max() > 0
    assert sum(int(np.asarray(b["mask"]).sum()) for b in evals) == c.data.test_limit
    registry.build_family(c, data.spec)  # the family takes this spec


def test_settings_defaults_are_the_paper_and_bad_values_are_named():
    from ml_collections import ConfigDict

    from argen_jax.config_lib import typed
    from argen_jax.data.pipeline import DataSpec
    from argen_jax.models.pixelcnnpp import PixelCNNPPFamily, PixelCNNPPSettings

    s = PixelCNNPPSettings()
    assert (s.features, s.num_resnet, s.num_resolutions, s.num_mixtures, s.dropout) == (
        160, 5, 3, 10, 0.5)
    with pytest.raises(ConfigError, match="model.dropout"):
        typed(PixelCNNPPSettings, {"dropout": 1.5}, "model")
    with pytest.raises(ConfigError, match="model.num_resnets"):
        typed(PixelCNNPPSettings, {"num_resnets": 2}, "model")
    cfg = ConfigDict({"model": {"name": "pixelcnnpp", "features": 4, "num_resnet": 1},
                      "sample": {"temperature": 0.5}})
    fam = PixelCNNPPFamily(cfg, DataSpec((4, 4, 1), 256))
    assert fam.sampling.temperature == 0.5 and fam.model.features == 4
    cfg.sample.top_k = 3  # a mixture has no top-k: said, not ignored
    with pytest.raises(ConfigError, match="sample.top_k"):
        PixelCNNPPFamily(cfg, DataSpec((4, 4, 1), 256))
