"""Generation orders (sampling/orders.py) of the token decoders: permutations invert exactly,
a model trained in order pi is causal in pi (in image coordinates), the cached sampler equals
the full pass in every order (random-order models: any order, per sample), the codec round
trips in a non-raster order at the model's NLL, and RAR's annealing schedule."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.codec import Codec
from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import ConfigError
from argen_jax.models.llamagen import LlamaGenFamily
from argen_jax.models.transformer import decoder_steps
from argen_jax.sampling import orders
from experiments.llamagen.fashion_mnist import get_config
from tests.model_utils import random_params

V, C, GRID = 7, 3, (4, 4)
N = GRID[0] * GRID[1]


def _family(order="raster", position_embed=False, grid=GRID, **model):
    cfg = get_config("tiny")
    cfg.model.width, cfg.model.num_heads, cfg.model.depth = 16, 2, 2
    cfg.model.order, cfg.model.position_embed = order, position_embed
    cfg.model.update(model)
    n = grid[0] * grid[1]
    return LlamaGenFamily(cfg, DataSpec((n,), V, C, "tokens", grid=grid))


def _params(fam, seed=0):
    tokens = jnp.zeros((1, fam.num_tokens), jnp.int32)
    t, pos = fam.ordered_inputs(tokens, None, False)
    return random_params(fam.model, fam.inputs(t, jnp.zeros((1,), jnp.int32)), positions=pos,
                         seed=seed)["params"]


@pytest.mark.parametrize("grid", [(4, 4), (5, 7), (8, 8), (28, 28)])
def test_fixed_orders_are_permutations_that_invert_exactly(grid):
    n = grid[0] * grid[1]
    x = np.random.default_rng(0).integers(0, 100, (2, n))
    for name in orders.FIXED_ORDERS:
        o = orders.fixed_order(name, *grid)
        assert sorted(o.tolist()) == list(range(n)), name
        assert np.array_equal(orders.inverse(o)[o], np.arange(n))
        seq = orders.permute(jnp.asarray(x), o)
        assert np.array_equal(np.asarray(seq), x[:, o])
        assert np.array_equal(np.asarray(orders.unpermute(seq, o)), x), name
    rand = orders.random_orders(jax.random.PRNGKey(0), 3, n)
    assert np.array_equal(np.asarray(orders.unpermute(orders.permute(jnp.asarray(x[:1].repeat(
        3, 0)), rand), rand)), x[:1].repeat(3, 0))


def test_fixed_orders_walk_as_named():
    rc = lambda o, w: [divmod(int(p), w) for p in o]  # noqa: E731
    assert rc(orders.fixed_order("snake", 2, 3), 3) == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1),
                                                       (1, 0)]
    assert rc(orders.fixed_order("diagonal", 2, 2), 2) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert rc(orders.fixed_order("zorder", 2, 4), 4)[:4] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for name in ("snake", "hilbert"):  # a curve: every step moves to a grid neighbour
        walk = np.array(rc(orders.fixed_order(name, 8, 8), 8))
        assert (np.abs(np.diff(walk, axis=0)).sum(1) == 1).all(), name


@pytest.mark.parametrize("order,position_embed", [("snake", False), ("hilbert", True),
                                                  ("random", True)])
def test_model_trained_in_order_pi_is_causal_in_pi(order, position_embed):
    """Changing the token at image position p changes exactly the predictions of positions
    after p in the order (and not p's own nor earlier ones), in image coordinates."""
    fam = _family(order, position_embed)
    params = _params(fam)
    base = jax.random.randint(jax.random.PRNGKey(1), (1, N), 0, V)
    batch = jnp.concatenate([base, (base + (jnp.eye(N, dtype=jnp.int32))) % V])  # [1 + N, N]
    o = jnp.broadcast_to(jnp.asarray(orders.random_orders(jax.random.PRNGKey(2), 1, N)
                                     if order == "random" else fam.order.eval), (N + 1, N))
    seq = orders.permute(batch, o)
    pos = orders.sequence_positions(o, fam.cls_token_num) if position_embed else None
    logits = fam.logits(params, seq, jnp.zeros((N + 1,), jnp.int32), positions=pos)
    # logits[:, t] predict image position o[t]: back to image coordinates
    img = jnp.take_along_axis(logits, jnp.argsort(o, axis=1)[..., None], axis=1)
    changed = np.asarray(jnp.abs(img[1:] - img[:1]).max(-1) > 1e-6)  # [p, q]
    rank = np.asarray(orders.inverse(o[0]))
    later = rank[None, :] > rank[:, None]  # q comes after p in the order
    assert not changed[~later].any()
    assert changed[later].mean() > 0.9  # a random model sees (almost) all its past


@pytest.mark.parametrize("order", orders.FIXED_ORDERS + ("per_sample",))
def test_cached_sampler_equals_full_pass_in_every_order(order):
    """The KV-cache sampler's logits at each step equal the full pass's over its draws, in
    each fixed order, and per-sample random orders for a position-embedding model."""
    fam = _family("random", True, **({} if order == "per_sample" else {"eval_order": order}))
    params = _params(fam, seed=3)
    b = 3
    labels = jnp.array([0, 2, 3])
    o = (orders.random_orders(jax.random.PRNGKey(4), b, N) if order == "per_sample"
         else jnp.asarray(orders.fixed_order(order, *GRID)))
    steps = decoder_steps(fam.model, params, labels, N, order=o)
    step = jax.jit(steps.step_fn)
    seq, cache, outs = steps.seq, steps.cache, []
    for t in range(N):  # draws: a fixed pseudo-random pick, to visit non-greedy tokens too
        out, cache = step(seq, cache, t)
        outs.append(out)
        x = (jnp.argmax(out, -1) + t) % V
        seq = steps.write_fn(seq, x, t)
    rows = jnp.broadcast_to(o, (b, N))
    full = fam.logits(params, orders.permute(seq, rows), labels,
                      positions=orders.sequence_positions(rows, fam.cls_token_num))
    np.testing.assert_allclose(np.stack(outs, 1), np.asarray(full), atol=2e-5)
    # the family's sampler draws in the order it is given and returns image layout
    keys = jax.random.split(jax.random.PRNGKey(0), b)
    if order != "per_sample":
        assert fam.sample(params, keys, labels, order=order).shape == (b, N)


def test_sampling_in_another_order_needs_position_embeddings():
    fam = _family("snake")
    with pytest.raises(ConfigError, match="only in that order"):
        fam.sample_order("raster")
    with pytest.raises(ConfigError, match="position_embed"):
        _family("random", False)
    with pytest.raises(ConfigError, match="anneal"):
        _family("snake", True, anneal_start=0.1, anneal_end=0.5)
    with pytest.raises(ConfigError, match="speculative"):
        cfg = get_config("tiny")
        cfg.model.order, cfg.sample.speculative = "snake", 4
        LlamaGenFamily(cfg, DataSpec((N,), V, C, "tokens", grid=GRID))


def test_codec_round_trips_in_a_hilbert_order_at_the_models_nll():
    fam = _family("hilbert", True)
    params = _params(fam, seed=5)
    rng = np.random.default_rng(0)
    data = [rng.integers(0, V, N), np.zeros(N, int)]
    enc = Codec(fam, params).encode(data, [1, 2], batch_size=2)
    dec = Codec(fam, params).decode([e.data for e in enc])
    assert all(np.array_equal(y, x) for x, (y, _) in zip(data, dec, strict=True))
    batch = {"tokens": jnp.asarray(np.stack(data)), "label": jnp.asarray([1, 2]),
             "mask": jnp.ones(2)}
    _, sums = fam.loss(params, batch, jax.random.PRNGKey(0), False)
    nll = float(sums["nll_sum"]) / np.log(2.0)
    assert abs(sum(e.table_bits for e in enc) - nll) < 0.01 * nll + 1


def test_rar_annealing_goes_from_random_to_raster():
    share = [float(orders.random_share(s, 100, 0.2, 0.6)) for s in (0, 20, 40, 60, 90)]
    np.testing.assert_allclose(share, [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-6)
    fam = _family("random", True, anneal_start=0.2, anneal_end=0.6)
    raster, steps = np.arange(N), fam.order.num_steps  # train.num_steps
    early = np.asarray(fam.order.train_orders(jax.random.PRNGKey(0), 64, 0))
    late = np.asarray(fam.order.train_orders(jax.random.PRNGKey(0), 64, int(0.6 * steps)))
    assert (early != raster).any(1).all() and (late == raster).all()
    mid = np.asarray(fam.order.train_orders(jax.random.PRNGKey(0), 400, int(0.4 * steps)))
    assert 0.4 < (mid != raster).any(1).mean() < 0.6


def test_igpt_loss_in_an_order_is_the_nll_of_the_permuted_sequence():
    """IGPT (pixels): the loss in zorder sums the decoder's NLL over the z-ordered pixels,
    and its sampler returns images in image layout."""
    from argen_jax.heads.categorical import categorical_nll
    from argen_jax.models.igpt import IGPTFamily
    from experiments.igpt.mnist import get_config as igpt_config

    cfg = igpt_config("tiny")
    cfg.model.width, cfg.model.mlp_dim = 16, 32
    cfg.model.order, cfg.model.position_embed = "zorder", True
    fam = IGPTFamily(cfg, DataSpec((4, 4, 1), 2, 10, "image"))
    images = jax.random.bernoulli(jax.random.PRNGKey(0), 0.4, (2, 4, 4, 1)).astype(jnp.int32)
    batch = {"image": images, "label": jnp.array([0, 1]), "mask": jnp.ones(2)}
    ids, targets, pos = fam._inputs(batch, fam._labels(batch))
    params = random_params(fam.model, ids, positions=pos)["params"]
    o = orders.fixed_order("zorder", 4, 4)
    assert np.array_equal(np.asarray(targets), np.asarray(images).reshape(2, -1)[:, o])
    logits, _ = fam.model.apply({"params": params}, ids, positions=pos)
    _, sums = fam.loss(params, batch, jax.random.PRNGKey(1), False)
    np.testing.assert_allclose(float(sums["nll_sum"]),
                               float(categorical_nll(logits, targets).sum()), rtol=1e-5)
    samples = fam.sample(params, jax.random.split(jax.random.PRNGKey(2), 2), order="snake")
    assert samples.shape == (2, 4, 4, 1) and set(np.unique(np.asarray(samples))) <= {0, 1}
