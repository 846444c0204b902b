"""VAR's and LlamaGen's training recipes: which parameters weight decay shrinks (VAR's
train.py filter_params, LlamaGen's creat_optimizer), the learning-rate and weight-decay
schedules point by point against the originals' formulas (written out below from VAR's
utils/lr_control.py lr_wd_annealing), the AdaLN gamma init per depth (VAR's README), and the
recipe values of experiments/{var,llamagen}/imagenet.py. The step-by-step comparison with the
PyTorch trainers needs their checkouts: experiments/benchmarks/checks/var_train_parity.py."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from argen_jax import config_lib
from argen_jax.layers.adaln import AdaLNBlock
from argen_jax.models.llamagen import llamagen_decoder
from argen_jax.models.var import VARTransformer
from argen_jax.train.optim import decay_mask, make_optimizer, make_schedule, param_path
from argen_jax.train.optim import weight_decay_schedule as wd_schedule
from argen_jax.train.settings import TrainSettings
from experiments.llamagen import imagenet as llamagen_imagenet
from experiments.var import imagenet as var_imagenet


def train_settings(config) -> TrainSettings:
    return config_lib.typed(TrainSettings, config.train, "train")


def decayed(cfg, params) -> set[str]:
    mask = decay_mask(cfg)(params)
    return {param_path(p) for p, m in jax.tree_util.tree_flatten_with_path(mask)[0] if m}


def var_shapes(depth=2):
    model = VARTransformer(vocab_size=16, code_dim=4, num_classes=3, patch_nums=(1, 2),
                           width=32, depth=depth, num_heads=2)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32),
                            jnp.zeros((1, 4, 4)))
    return {"var": shapes["params"]}


def unbox(tree):
    return jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, tree,
                        is_leaf=lambda x: hasattr(x, "unbox"))


# --------------------------------------------------------------------------- decay masks
def test_var_recipe_decays_what_filter_params_decays():
    """filter_params: no decay for 1-D params, names ending in 'bias', names holding a nowd
    key (pos_start, pos_1LC = our pos_embed, lvl_embed, scale_mul = our 1-D logit_scale)."""
    params = unbox(var_shapes())
    cfg = train_settings(var_imagenet.get_config("d16"))
    block = {f"var/block_{i}/{n}" for i in range(2) for n in (
        "attn/query", "attn/key", "attn/value", "attn/out", "ffn/fc1/kernel",
        "ffn/fc2/kernel", "ada_lin/kernel")}
    assert decayed(cfg, params) == block | {"var/word_embed/kernel", "var/class_emb",
                                            "var/head_nm/ada_lin/kernel", "var/head/kernel"}
    # the exempt ones VAR names: embeddings by name, 2-D attention biases by their name
    everything = {param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
    exempt = everything - decayed(cfg, params)
    assert {"var/pos_start", "var/pos_embed", "var/lvl_embed", "var/block_0/attn/query_bias",
            "var/block_1/attn/logit_scale", "var/head/bias"} <= exempt


def test_matrices_without_names_decays_embeddings_but_not_2d_biases():
    params = unbox(var_shapes(depth=1))
    cfg = TrainSettings(num_steps=10, lr=1e-3, weight_decay=0.1, decay="matrices")
    got = decayed(cfg, params)
    assert {"var/pos_start", "var/pos_embed", "var/lvl_embed"} <= got
    assert not any(p.endswith("bias") for p in got)
    assert decay_mask(TrainSettings(num_steps=10, lr=1e-3)) is None  # 'all': no mask


def test_llamagen_recipe_decays_every_matrix_and_no_norm():
    """creat_optimizer: decay iff p.dim() >= 2 (LlamaGen has no biases; norms are 1-D)."""
    model = llamagen_decoder({"width": 32, "depth": 1, "num_heads": 2, "multiple_of": 32},
                             16, 3, (2, 2))
    params = unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0),
                                  jnp.zeros((1, 4), jnp.int32))["params"])
    cfg = train_settings(llamagen_imagenet.get_config("B"))
    flat = {param_path(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert decayed(cfg, params) == {k for k, x in flat.items() if x.ndim >= 2}
    assert {k for k, x in flat.items() if x.ndim < 2} == {
        "block_0/attn_norm/scale", "block_0/mlp_norm/scale", "final_norm/scale"}


def test_decay_is_applied_only_on_the_mask_with_the_scheduled_coefficient():
    """Zero gradients: AdamW's update is -lr(t) * wd(t) * p on decayed leaves, 0 elsewhere."""
    cfg = TrainSettings(num_steps=5, lr=0.1, schedule="constant", weight_decay=0.5,
                        weight_decay_schedule="cosine", weight_decay_end=0.2,
                        decay="matrices", no_decay="pos")
    params = {"w": jnp.ones((2, 2)), "pos": jnp.ones((2, 2)), "b": jnp.ones((2,))}
    tx, _ = make_optimizer(cfg, None)
    state = tx.init(params)
    for t in range(3):
        updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
        wd = 0.2 + 0.3 * (0.5 + 0.5 * math.cos(math.pi * t / 4))
        np.testing.assert_allclose(updates["w"], -0.1 * wd * np.ones((2, 2)), rtol=1e-6)
        assert not np.any(updates["pos"]) and not np.any(updates["b"])


# --------------------------------------------------------------------------- schedules
def var_lr(it, peak, wp_it, max_it, wp0, wpe):
    """VAR's lr_wd_annealing('lin0', ...) learning rate, from utils/lr_control.py."""
    if it < wp_it:
        f = wp0 + (1 - wp0) * it / wp_it
    else:
        pasd = (it - wp_it) / (max_it - 1 - wp_it)
        f = 1.0 if pasd < 0.05 else wpe + (1 - wpe) * (1 - pasd) / 0.95
    return f * peak


def var_wd(it, wd, wd_end, max_it):
    return wd_end + (wd - wd_end) * (0.5 + 0.5 * math.cos(math.pi * it / (max_it - 1)))


def probe_steps(total, warmup):
    hold = warmup + 0.05 * (total - 1 - warmup)
    pts = {0, 1, warmup - 1, warmup, warmup + 1, int(hold), int(hold) + 1, total // 2,
           total - 2, total - 1}
    pts |= set(np.linspace(0, total - 1, 37).astype(int).tolist())
    return sorted(p for p in pts if 0 <= p < total)


@pytest.mark.parametrize("depth", ["d16", "d20", "d24", "d30"])
def test_var_lr_and_wd_follow_lr_wd_annealing(depth):
    """Every recipe, at the warm-up's ends, the 5% hold's end, and 37 evenly spaced steps.
    VAR's iterations: ceil(1,281,167 / bs) per epoch, warm-up round(ep / 50 * that)."""
    r = var_imagenet.RECIPES[depth]
    iters = math.ceil(1_281_167 / r.batch)
    max_it, wp_it = r.epochs * iters, round(r.epochs / 50 * iters)
    peak, twde = r.base_lr * r.batch / 256, r.weight_decay_end or 0.05
    cfg = train_settings(var_imagenet.get_config(depth))
    assert (cfg.num_steps, cfg.warmup_steps, cfg.lr) == (max_it, wp_it, pytest.approx(peak))
    lr, wd = jax.jit(make_schedule(cfg)), jax.jit(wd_schedule(cfg))
    for it in probe_steps(max_it, wp_it):
        want = var_lr(it, peak, wp_it, max_it, wp0=0.005, wpe=r.end_lr_fraction)
        assert float(lr(it)) == pytest.approx(want, rel=2e-5), it
        assert float(wd(it)) == pytest.approx(var_wd(it, 0.05, twde, max_it), rel=2e-5), it


def test_lin0_short_run_point_by_point():
    """Every step of a short run (float32: relative error ~1e-6)."""
    cfg = TrainSettings(num_steps=40, lr=2e-3, schedule="lin0", warmup_steps=7,
                        warmup_start_fraction=0.005, end_lr_fraction=0.01,
                        weight_decay=0.05, weight_decay_schedule="cosine",
                        weight_decay_end=0.08)
    lr, wd = make_schedule(cfg), wd_schedule(cfg)
    for it in range(40):
        assert float(lr(it)) == pytest.approx(var_lr(it, 2e-3, 7, 40, 0.005, 0.01), rel=2e-5)
        assert float(wd(it)) == pytest.approx(var_wd(it, 0.05, 0.08, 40), rel=2e-5)


def test_llamagen_recipe_is_constant_lr_without_warmup():
    """train_c2i.py: AdamW at lr 1e-4, no scheduler; 300 epochs of floor(1,281,167 / 256)."""
    cfg = train_settings(llamagen_imagenet.get_config("XL"))
    assert (cfg.lr, cfg.warmup_steps, cfg.b1, cfg.b2, cfg.weight_decay, cfg.grad_clip,
            cfg.ema_decay, cfg.num_steps) == (1e-4, 0, 0.9, 0.95, 0.05, 1.0, 0.0, 300 * 5004)
    s = make_schedule(cfg)
    for t in (0, 1, 1000, cfg.num_steps - 1):
        assert float(s(t)) == pytest.approx(1e-4, rel=1e-6)


# --------------------------------------------------------------------------- AdaLN gamma
def test_alng_per_depth_as_var_readme():
    want = {"d16": 1e-3, "d20": 1e-3, "d24": 1e-4, "d30": 1e-5}
    got = {d: var_imagenet.get_config(d).model.ada_gamma_init for d in want}
    assert got == want
    assert var_imagenet.get_config("d30").train.weight_decay_end == 0.08
    assert var_imagenet.get_config("d16").train.weight_decay_schedule == "constant"


def test_gamma_init_scales_only_the_gamma_columns():
    x, cond = jnp.zeros((1, 2, 16)), jnp.ones((1, 16))
    mask = jnp.ones((1, 1, 2, 2), bool)

    def ada(gamma):
        v = AdaLNBlock(num_heads=2, gamma_init=gamma).init(jax.random.PRNGKey(0), x, cond, mask)
        return np.asarray(unbox(v["params"])["ada_lin"]["kernel"])

    a, b = ada(1e-3), ada(1e-5)
    np.testing.assert_allclose(a[:, :32], 100 * b[:, :32], rtol=1e-5)  # gamma1, gamma2
    np.testing.assert_array_equal(a[:, 32:], b[:, 32:])  # scales and shifts: x 0.5 both


def test_optimizer_state_of_constant_decay_is_optax_adamw():
    """Runs saved before the decay schedule existed resume: same state tree."""
    cfg = TrainSettings(num_steps=5, lr=0.1, weight_decay=0.1, decay="matrices",
                        grad_clip=1.0)
    params = {"w": jnp.ones((2, 2))}
    ours = jax.tree.structure(make_optimizer(cfg, None)[0].init(params))
    want = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(
        optax.constant_schedule(0.1), weight_decay=0.1,
        mask=lambda p: jax.tree.map(lambda x: True, p)))
    assert ours == jax.tree.structure(want.init(params))


def test_var_init_scales_residual_outputs_by_depth():
    """VAR's init_weights: q/k/v/proj/fc2 N(0, 1/3C), proj and fc2 / sqrt(2 depth)."""
    depth, width = 2, 64
    model = VARTransformer(vocab_size=16, code_dim=4, num_classes=3, patch_nums=(1, 2),
                           width=width, depth=depth, num_heads=2)
    p = unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32),
                         jnp.zeros((1, 4, 4)))["params"])
    std = (1 / (3 * width)) ** 0.5
    blocks = [p[f"block_{i}"] for i in range(depth)]
    for name, want in (("query", std), ("value", std), ("out", std / (2 * depth) ** 0.5)):
        got = np.std(np.stack([b["attn"][name] for b in blocks]))
        assert got == pytest.approx(want, rel=0.05), name
    got = np.std(np.stack([b["ffn"]["fc2"]["kernel"] for b in blocks]))
    assert got == pytest.approx(std / (2 * depth) ** 0.5, rel=0.05)
