"""VQGAN tokenizer family (argen_jax/models/vqgan.py) and its `Tokenizer`
(argen_jax/models/tokenizer.py): shapes, masks, GAN start step, perceptual weights from a local
file, metrics, a tiny training run, restoring it, and the dataset script."""
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.config_lib import typed
from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import CheckpointError, ConfigError
from argen_jax.evaluation import metrics
from argen_jax.losses import perceptual
from argen_jax.models import vqgan
from argen_jax.models.tokenizer import Tokenizer
from argen_jax.train.optim import make_optimizer
from argen_jax.train.settings import TrainSettings
from experiments.tokenizer import small

SPEC = DataSpec((28, 28, 1), 256, 10, "image")


def _family(arg="tiny", **overrides):
    c = small.get_config(arg)
    for k, v in overrides.items():
        sec, key = k.split(".")
        c[sec][key] = v
    return vqgan.VQGANFamily(c, SPEC)


def _batch(n=4, seed=0, mask=None):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.integers(0, 256, (n, 28, 28, 1)), jnp.uint8),
            "label": jnp.arange(n, dtype=jnp.int32) % 10,
            "mask": jnp.ones((n,), jnp.float32) if mask is None else jnp.asarray(mask)}


@pytest.mark.parametrize("arg", ["tiny", "tiny,multiscale"])
def test_encode_decode_shapes(arg, rng):
    fam = _family(arg)
    b = _batch(2)
    params = fam.init(rng, b)["params"]
    tok = Tokenizer.of(fam, params)
    idx = tok.encode(b["image"])
    if tok.multiscale:
        assert [i.shape for i in idx] == [(2, s, s) for s in (1, 2, 4, 8)]
        assert tok.token_shapes == [(s, s) for s in (1, 2, 4, 8)]
        tf = tok.teacher_forcing_inputs(idx)
        assert tf.shape == (2, 4 + 16 + 64, 8)
    else:
        assert idx.shape == (2, 8, 8) and tok.token_shapes == [(8, 8)]  # 28 -> pad 32 -> /4
    assert all(int(jnp.max(i)) < tok.codebook_size for i in jax.tree.leaves(idx))
    out = tok.decode(idx)
    assert out.shape == (2, 28, 28, 1) and out.dtype == jnp.int32
    assert int(out.min()) >= 0 and int(out.max()) <= 255


def test_bad_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="last scale"):
        _family("tiny,multiscale", **{"model.scales": (1, 2, 4)})
    with pytest.raises(ConfigError, match="divisible"):
        _family("tiny", **{"model.pad_to": 30})
    with pytest.raises(ConfigError, match="perceptual_path"):
        _family("tiny", **{"loss.perceptual_weight": 1.0, "loss.perceptual_path": "/nope.npz"})


def test_loss_masks_padding_examples(rng):
    fam = _family("tiny")
    b = _batch(4, mask=[1.0, 1.0, 0.0, 0.0])
    params = fam.init(rng, b)["params"]
    loss, m = fam.loss(params, b, rng, False)
    other = dict(b, image=b["image"].at[2:].set(255))  # change only the padding
    loss2, m2 = fam.loss(params, other, rng, False)
    np.testing.assert_allclose(loss, loss2, rtol=1e-6)
    chex.assert_trees_all_close(m, m2, rtol=1e-5)
    assert float(m["num_examples"]) == 2.0
    _, m_two = fam.loss(params, {k: v[:2] for k, v in b.items()}, rng, False)
    for k in ("l1_sum", "mse_sum", "psnr_sum", "ssim_sum", "quant_loss_sum"):
        np.testing.assert_allclose(m[k], m_two[k], rtol=1e-5, err_msg=k)


def test_discriminator_starts_at_the_configured_step(rng):
    fam = _family("tiny", **{"loss.disc_weight": 0.5, "loss.disc_start": 5})
    b = _batch(2)
    params = fam.init(rng, b)["params"]
    grad = jax.jit(jax.grad(lambda p, s: fam.loss(p, b, rng, True, s)[0]))  # one compile
    g_before, g_after = grad(params, jnp.int32(4)), grad(params, jnp.int32(5))
    norm = lambda t: float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(t)))  # noqa: E731
    assert norm(g_before["discriminator"]) == 0.0
    assert norm(g_after["discriminator"]) > 0.0
    # before the start step the objective is the GAN-free one; after it the generator's
    # gradient gains the adversarial term
    loss_at = jax.jit(lambda p, s: fam.loss(p, b, rng, True, s))
    np.testing.assert_allclose(loss_at(params, jnp.int32(4))[0],
                               jax.jit(lambda p: fam.loss(p, b, rng, True)[0])(params), rtol=1e-5)
    assert not np.allclose(jax.tree.leaves(g_after["generator"])[0],
                           jax.tree.leaves(g_before["generator"])[0])
    _, m = loss_at(params, jnp.int32(5))
    assert float(m["disc_active_sum"]) == 2.0 and float(m["d_loss_sum"]) > 0


def test_perceptual_weights_from_a_local_file(tmp_path, rng):
    path = perceptual.make_perceptual_weights(str(tmp_path / "feat.npz"), stages=(4, 8))
    w = {k: jnp.asarray(v) for k, v in perceptual.load_perceptual_weights(path).items()}
    x = jax.random.uniform(rng, (2, 16, 16, 1), minval=-1, maxval=1)
    y = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 16, 1), minval=-1, maxval=1)
    np.testing.assert_allclose(perceptual.perceptual_distance(w, x, x), 0.0, atol=1e-6)
    assert bool(jnp.all(perceptual.perceptual_distance(w, x, y) > 0))
    fam = _family("tiny", **{"loss.perceptual_weight": 1.0, "loss.perceptual_path": path})
    b = _batch(2)
    params = fam.init(rng, b)["params"]
    chex.assert_trees_all_equal(params["perceptual"]["stage1/conv0/kernel"],
                                w["stage1/conv0/kernel"])
    tcfg = small.get_config("tiny").train
    tcfg.warmup_steps = 0  # lr > 0 at step 0
    tx, _ = make_optimizer(typed(TrainSettings, tcfg, "train"), fam)
    grads = jax.jit(jax.grad(lambda p: fam.loss(p, b, rng, True)[0]))(params)
    upd, _ = tx.update(grads, tx.init(params), params)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(upd["perceptual"]))
    assert any(float(jnp.abs(u).max()) > 0.0 for u in jax.tree.leaves(upd["generator"]))


def test_tokenizer_psnr_and_ssim_match_skimage_defaults():
    """The tokenizer reports SSIM with skimage's default (uniform 7x7) window, as LlamaGen."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 16, 16, 1)).astype(np.float64)
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).round()
    ours_p = metrics.psnr(jnp.asarray(x), jnp.asarray(y), mse_floor=1e-10)
    ours_s = metrics.ssim(jnp.asarray(x), jnp.asarray(y), window="uniform")
    for i in range(2):
        np.testing.assert_allclose(ours_p[i], peak_signal_noise_ratio(x[i], y[i], data_range=255),
                                   rtol=1e-4)
        np.testing.assert_allclose(
            ours_s[i], structural_similarity(x[i, ..., 0], y[i, ..., 0], data_range=255),
            rtol=1e-3)


@pytest.mark.slow
def test_tiny_training_run_restore_and_tokenize(tmp_path):
    from argen_jax.train import loop
    from experiments.tokenizer import tokenize_dataset

    c = small.get_config("tiny,multiscale")
    c.model.restart_threshold = 0.03  # exercise the assigned quantizer state in the loop
    c.train.num_steps = 8
    c.train.log_every = 1
    workdir = str(tmp_path / "tok")
    loop.train(c, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    train = [r for r in rows if "train/loss" in r]
    assert len(train) == 8 and all(np.isfinite(r["train/loss"]) for r in train)
    assert "train/live_codes" in train[-1]  # the assigned quantizer state went through the loop
    ev = [r for r in rows if "eval/psnr" in r][-1]
    assert np.isfinite(ev["eval/psnr"]) and 0 < ev["eval/ssim"] <= 1
    assert 0 < ev["eval/batch_usage_scale0"] <= ev["eval/batch_usage_scale3"]
    out = str(tmp_path / "tokens.npz")
    png = str(tmp_path / "recon.png")
    stats = tokenize_dataset.tokenize(workdir, out, splits=("test",), batch_size=50,
                                      png=png, full=False)
    from PIL import Image

    side = np.asarray(Image.open(png))
    assert side.ndim >= 2 and side.shape[0] > 2 * 28 and side.std() > 1.0  # not blank
    with np.load(out) as f:
        assert f["test_tokens"].shape == (100, 1 + 4 + 16 + 64)
        assert f["test_labels"].shape == (100,)
        np.testing.assert_array_equal(f["scales"], [1, 2, 4, 8])
        assert int(f["test_tokens"].max()) < int(f["codebook_size"])
    assert len(stats["test"]["usage_per_scale"]) == 4


@pytest.mark.slow
def test_tokenizer_load_restores_only_params_and_matches_the_trained_ones(tmp_path):
    """`Tokenizer.load` (config.json + data_spec.json + the params of the newest checkpoint, no
    Experiment) reconstructs exactly as the params the loop restores; workdirs that are not a
    tokenizer run, have no checkpoint or a damaged one give one-line CheckpointErrors."""
    import shutil

    from argen_jax.train import loop

    c = small.get_config("tiny")
    c.train.num_steps = 3
    workdir = str(tmp_path / "tok")
    loop.train(c, workdir)
    tok = Tokenizer.load(workdir)
    exp, state = loop.restore_experiment(c, workdir)
    trained = Tokenizer.of(exp.family, exp.eval_params(state))
    assert tok.step == 3 and tok.token_shapes == trained.token_shapes == [(8, 8)]
    x = _batch(4, seed=3)["image"]
    np.testing.assert_array_equal(tok.encode(x), trained.encode(x))
    np.testing.assert_array_equal(tok.reconstruct(x), trained.reconstruct(x))
    np.testing.assert_array_equal(tok.reconstruct(x), trained.decode(trained.encode(x)))
    # a token model's family gets it loaded by the registry, before anything is traced
    from argen_jax import registry
    from experiments.llamagen import fashion_mnist

    spec = DataSpec((64,), 64, 10, "tokens", grid=(8, 8), tokenizer=workdir)
    fam = registry.build_family(fashion_mnist.get_config("tiny"), spec)
    assert fam.tokenizer.step == 3 and fam.image_levels == 256
    np.testing.assert_array_equal(fam.to_images(np.asarray(tok.encode(x)).reshape(4, -1)),
                                  tok.reconstruct(x))

    def one_line_error(path, match):
        with pytest.raises(CheckpointError, match=match) as e:
            Tokenizer.load(path)
        assert "\n" not in str(e.value)

    one_line_error(str(tmp_path / "missing"), "not found: is .* a tokenizer workdir")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model": {"name": "pixelcnn"}}))
    one_line_error(str(other), "holds a 'pixelcnn' run, not a tokenizer")
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(os.path.join(workdir, "config.json"), empty / "config.json")
    shutil.copy(os.path.join(workdir, "data_spec.json"), empty / "data_spec.json")
    one_line_error(str(empty), "no checkpoint")
    damaged = tmp_path / "damaged"
    shutil.copytree(workdir, damaged)
    state_dir = damaged / "checkpoints" / "3" / "state"
    for f in state_dir.rglob("*"):
        if f.is_file() and f.name != "commit_success.txt":
            f.write_bytes(b"")
    one_line_error(str(damaged), "could not be read")
