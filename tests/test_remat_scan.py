"""Rematerialisation and scanned layers (`layers/repeat.py`, model.remat / model.scan_layers)
change neither the loss nor its gradients (float32, tight tolerance) for the Llama decoder,
VAR and the tokenizer's ResBlocks; scanned decoders keep their KV-cache samplers exact and
their masks causal; `stack_layers` / `unstack_layers` are inverse layouts."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import ConfigError
from argen_jax.layers.repeat import stack_layers, unstack_layers
from argen_jax.models import var as varlib
from argen_jax.models import vqgan
from argen_jax.models.llamagen import LlamaGenSettings
from argen_jax.models.transformer import Decoder, decoder_steps
from argen_jax.sampling.loop import sample_keys
from experiments.tokenizer import small
from tests.model_utils import random_params

V, T = 16, 9
MODES = [("full", False), ("dots_saveable", False), ("none", True), ("nothing_saveable", True)]
TOL = dict(rtol=1e-5, atol=1e-6)


def _decoder(**kw):
    return Decoder(vocab_size=V, num_classes=3, max_len=T, width=16, depth=3, num_heads=4,
                   num_kv_heads=2, mlp_dim=32, rope="2d", grid=(3, 3), num_prefix=1,
                   prefix_rope="zero", **kw)


def _ids(b=2):
    ids = jax.random.randint(jax.random.PRNGKey(1), (b, T), 0, V)
    return ids.at[:, 0].set(V + jnp.arange(b) % 3)


def _loss_and_grads(model, params, ids):
    def loss(p):
        logits, _ = model.apply({"params": p}, ids[:, :-1], train=True)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None] % V, -1))

    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("remat,scan", MODES)
def test_decoder_loss_and_gradients_unchanged(remat, scan):
    ids = _ids()
    plain = _decoder()
    params = random_params(plain, ids)["params"]
    loss0, g0 = _loss_and_grads(plain, params, ids)
    model = _decoder(remat=remat, scan_layers=scan)
    loss1, g1 = _loss_and_grads(model, stack_layers(params) if scan else params, ids)
    np.testing.assert_allclose(loss1, loss0, **TOL)
    chex.assert_trees_all_close(unstack_layers(g1) if scan else g1, g0, **TOL)


def test_scanned_params_are_the_stacked_unrolled_ones():
    ids = _ids()
    plain = _decoder()
    params = random_params(plain, ids)["params"]
    stacked = stack_layers(params)
    assert "blocks" in stacked and "block_0" not in stacked
    chex.assert_shape(stacked["blocks"]["attn"]["query"], (3, 16, 4, 4))
    chex.assert_trees_all_equal(unstack_layers(stacked), params)
    scanned = _decoder(scan_layers=True)
    abstract = jax.eval_shape(scanned.init, jax.random.PRNGKey(0), ids)["params"]
    chex.assert_trees_all_equal_shapes(nn.unbox(abstract), stacked)
    names = nn.get_partition_spec(abstract)["blocks"]["attn"]["query"]
    assert names[0] == "layers"  # the scanned axis has its own logical name


def test_scanned_decoder_kv_cache_sampler_equals_full_pass():
    """Greedy (argmax) cached sampling of a scanned decoder: every step's logits equal the
    full pass over the drawn tokens, and the tokens equal the unrolled model's."""
    ids = _ids()
    params = random_params(_decoder(), ids)["params"]
    scanned = _decoder(scan_layers=True, remat="full")
    sp = stack_layers(params)
    labels = jnp.array([0, 2], jnp.int32)
    keys = sample_keys(jax.random.PRNGKey(0), 0, 2)
    greedy = lambda k, logits, t: jnp.argmax(logits, -1)  # noqa: E731

    state, _ = jax.jit(lambda p: decoder_steps(scanned, p, labels, T - 1).run(greedy, keys))(sp)
    toks = state.seq
    ids_full = jnp.concatenate([scanned.class_prompt(labels), toks[:, :-1]], axis=1)
    full, _ = scanned.apply({"params": sp}, ids_full)
    np.testing.assert_array_equal(toks, jnp.argmax(full, -1))  # greedy = argmax of full pass
    unrolled, _ = jax.jit(lambda p: decoder_steps(_decoder(), p, labels, T - 1).run(
        greedy, keys))(params)
    np.testing.assert_array_equal(toks, unrolled.seq)
    # prefill + decode logits of the scanned cache equal its full pass
    cache = scanned.init_cache(2)
    outs = []
    for start, n in [(0, 3), (3, 1), (4, 2), (6, 2)]:
        logits, cache = scanned.apply({"params": sp}, ids_full[:, start:start + n], cache,
                                      method=Decoder.extend)
        outs.append(logits)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, rtol=1e-5, atol=2e-5)
    np.testing.assert_array_equal(cache.index, [ids_full.shape[1]] * 3)  # one per layer


@pytest.mark.parametrize("remat,scan", [("full", True), ("dots_saveable", False)])
def test_decoder_stays_causal(remat, scan):
    model = _decoder(remat=remat, scan_layers=scan, perturb_embeddings=True)
    ids = _ids()
    variables = random_params(model, ids)

    def per_position(p):
        logits, _ = model.apply({"params": variables["params"], "perturbations": p}, ids)
        return logits.sum(axis=(0, 2))

    jac = jax.jit(jax.jacrev(per_position))(variables["perturbations"])["embed"]
    seen = np.asarray(jnp.abs(jac).sum(axis=(1, 3)) > 0)
    np.testing.assert_array_equal(seen, np.tril(np.ones((T, T), bool)))


# ----------------------------------------------------------------------------- VAR
SCALES = (1, 2, 3)
L = sum(p * p for p in SCALES)


def _var(**kw):
    return varlib.VARTransformer(vocab_size=V, code_dim=4, num_classes=3, patch_nums=SCALES,
                                 width=16, depth=3, num_heads=2, **kw)


@pytest.mark.parametrize("remat,scan", MODES)
def test_var_loss_and_gradients_unchanged(remat, scan):
    labels = jnp.array([0, 3], jnp.int32)
    x_tf = jax.random.normal(jax.random.PRNGKey(2), (2, L - 1, 4))
    targets = jax.random.randint(jax.random.PRNGKey(3), (2, L), 0, V)
    plain = _var()
    params = random_params(plain, labels, x_tf)["params"]

    def loss_grads(model, p):
        def loss(p):
            logits = model.apply({"params": p}, labels, x_tf, train=True)
            logp = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1))

        return jax.jit(jax.value_and_grad(loss))(p)

    loss0, g0 = loss_grads(plain, params)
    loss1, g1 = loss_grads(_var(remat=remat, scan_layers=scan),
                           stack_layers(params) if scan else params)
    np.testing.assert_allclose(loss1, loss0, **TOL)
    chex.assert_trees_all_close(unstack_layers(g1) if scan else g1, g0, **TOL)


def test_scanned_var_cache_equals_full_pass_and_is_block_causal():
    labels = jnp.array([0, 3], jnp.int32)
    x_tf = jax.random.normal(jax.random.PRNGKey(2), (2, L - 1, 4))
    params = random_params(_var(), labels, x_tf)["params"]
    model, sp = _var(scan_layers=True, remat="full"), stack_layers(params)
    full = model.apply({"params": sp}, labels, x_tf)
    cache = model.init_cache(2)
    outs = []
    for s, (a, b) in enumerate(model.begin_ends):
        inputs = None if s == 0 else x_tf[:, a - 1:b - 1]
        logits, cache = model.apply({"params": sp}, labels, inputs, cache, s,
                                    method=varlib.VARTransformer.extend)
        outs.append(logits)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, rtol=1e-5, atol=2e-5)
    dep = jax.jacrev(lambda x: model.apply({"params": sp}, labels, x).sum((0, 2)))(x_tf)
    blk = model.block_ids()
    np.testing.assert_array_equal(np.asarray(jnp.abs(dep).sum((1, 3)) > 0),
                                  blk[1:][None, :] <= blk[:, None])


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_remat_keeps_loss_and_gradients():
    spec = DataSpec((28, 28, 1), 256, 10, "image")
    c = small.get_config("tiny")
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.integers(0, 256, (2, 28, 28, 1)), jnp.uint8),
             "label": jnp.zeros((2,), jnp.int32), "mask": jnp.ones((2,), jnp.float32)}
    plain = vqgan.VQGANFamily(c, spec)
    params = nn.unbox(plain.init(jax.random.PRNGKey(0), batch)["params"])
    c.model.remat = "full"
    remat = vqgan.VQGANFamily(c, spec)
    key = jax.random.PRNGKey(1)

    def run(fam):
        return jax.jit(jax.value_and_grad(
            lambda p: fam.loss(p, batch, key, True, 0), has_aux=True))(params)

    (l0, _), g0 = run(plain)
    (l1, _), g1 = run(remat)
    np.testing.assert_allclose(l1, l0, **TOL)
    chex.assert_trees_all_close(g1, g0, rtol=1e-5, atol=1e-6)


def test_unknown_remat_policy_is_a_one_line_config_error():
    for make in (lambda: LlamaGenSettings(remat="dots"), lambda: varlib.VARSettings(
            remat="sometimes"), lambda: vqgan.VQGANSettings(remat="all")):
        with pytest.raises(ConfigError, match="model.remat") as err:
            make()
        assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- converters
def test_scanned_llamagen_converts_from_a_state_dict_and_samples_like_its_full_pass():
    """A scanned LlamaGen config converts LlamaGen's (unrolled) state dict into its stacked
    layout; it reproduces the reference forward pass and its greedy CFG sampler through the
    stacked KV cache picks the argmax of its own full pass's guided logits."""
    from argen_jax.models.llamagen import LlamaGenFamily, ffn_dim
    from argen_jax.pretrained.torch_llamagen import convert_gpt
    from experiments.llamagen.fashion_mnist import get_config
    from tests.test_llamagen import _llamagen_state_dict, _reference_forward

    depth, heads, width, grid, vocab, classes = 3, 2, 16, 3, 12, 3
    rng = np.random.default_rng(0)
    sd = _llamagen_state_dict(rng, depth, heads, width, ffn_dim(width, None, 8), vocab,
                              classes, grid * grid)
    cfg = get_config("tiny")
    cfg.model.update(width=width, depth=depth, num_heads=heads, multiple_of=8,
                     scan_layers=True, remat="dots_saveable")
    cfg.sample.update(top_k=1, cfg_scale=2.0)
    fam = LlamaGenFamily(cfg, DataSpec((grid * grid,), vocab, classes, "tokens",
                                       grid=(grid, grid)))
    params = convert_gpt(sd, fam.model)
    assert "blocks" in params and "block_0" not in params
    tokens = rng.integers(0, vocab, (3, grid * grid))
    labels = np.array([0, 2, 3])
    ours = jax.jit(fam.logits)(params, jnp.asarray(tokens), jnp.asarray(labels))
    ref = _reference_forward(sd, labels, tokens, depth, heads, grid)
    np.testing.assert_allclose(np.asarray(ours), ref, atol=2e-4, rtol=2e-4)

    labels = jnp.array([0, 1, 2, 0])
    toks = jax.jit(fam.sample)(params, sample_keys(jax.random.PRNGKey(0), 0, 4), labels)
    cond, uncond = jax.jit(lambda p: (fam.logits(p, toks, labels),
                                      fam.logits(p, toks, jnp.full((4,), classes))))(params)
    np.testing.assert_array_equal(toks, (uncond + 2.0 * (cond - uncond)).argmax(-1))
