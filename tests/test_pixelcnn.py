"""PixelCNN / Gated PixelCNN: causality through jax.grad, blind spot, sampling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.data.pipeline import DataSpec
from argen_jax.models.pixelcnn import GatedPixelCNN, PixelCNN, PixelCNNFamily
from argen_jax.sampling.loop import sample_keys

H = W = 7


def input_grads(model, c, levels):
    """Returns g(i, j, ch) -> |d logit(i, j, ch) / d input| per input position: [H, W, C].
    Jitted once per model; the position is a traced argument."""
    x = jnp.asarray(np.random.RandomState(0).randint(0, levels, (1, H, W, c)))
    params = model.init(jax.random.PRNGKey(0), x)

    @jax.jit
    def g(i, j, ch):
        f = lambda xf: model.apply(params, xf)[0, i, j, ch].sum()  # noqa: E731
        return jnp.abs(jax.grad(f)(x.astype(jnp.float32)))[0]

    return lambda i, j, ch: np.asarray(g(i, j, ch))


def raster_before(i, j, ch, c):
    """Boolean [H, W, C]: which inputs output (i, j, ch) may depend on."""
    allowed = np.zeros((H, W, c), bool)
    for a in range(H):
        for b in range(W):
            if (a, b) < (i, j):
                allowed[a, b, :] = True
    allowed[i, j, :ch] = True
    return allowed


@pytest.mark.parametrize("cls", [PixelCNN, GatedPixelCNN])
@pytest.mark.parametrize("c", [1, 3])
def test_causal(cls, c):
    """No output depends on its own or any later sub-pixel."""
    model = cls(levels=4, channels=c, features=6, num_layers=3, in_kernel=5, out_hidden=6)
    grads = input_grads(model, c, 4)
    for i, j in [(3, 3), (0, 0), (6, 2)]:
        for ch in range(c):
            g = grads(i, j, ch)
            leak = g[~raster_before(i, j, ch, c)]
            assert leak.max() == 0.0, f"{cls.__name__} output ({i},{j},{ch}) sees the future"


def test_pixelcnn_has_blind_spot_and_gated_has_none():
    """Stacked masked 3x3 convs miss pixels up-right of the cone; the two-stack design sees
    every earlier pixel (receptive field large enough for the 7x7 image)."""
    i, j = 5, 2
    before = raster_before(i, j, 0, 1)[..., 0]
    pix = PixelCNN(levels=2, channels=1, features=8, num_layers=4, in_kernel=3, out_hidden=8)
    g = input_grads(pix, 1, 2)(i, j, 0)[..., 0]
    blind = before & (g == 0)
    assert blind.any(), "PixelCNN should have a blind spot"
    assert blind[i - 1, j + 3] or blind[i - 2, j + 4], "blind spot should be up and to the right"
    gated = GatedPixelCNN(levels=2, channels=1, features=8, num_layers=5, in_kernel=3,
                          out_hidden=8)
    g = input_grads(gated, 1, 2)(i, j, 0)[..., 0]
    assert (g[before] > 0).all(), "Gated PixelCNN must see every earlier pixel"


def _family(name="gated_pixelcnn", num_classes=3):
    from ml_collections import ConfigDict

    cfg = ConfigDict({"model": {"name": name, "features": 6, "num_layers": 2, "in_kernel": 3,
                                "out_hidden": 6, "conditional": True}})
    return PixelCNNFamily(cfg, DataSpec((4, 4, 1), 2, num_classes))


def test_conditioning_changes_logits():
    fam = _family()
    x = jnp.zeros((2, 4, 4, 1), jnp.int32)
    params = fam.init(jax.random.PRNGKey(0), {"image": x, "label": jnp.array([0, 1])})
    logits = fam.model.apply(params, x, jnp.array([0, 1]))
    assert not np.allclose(logits[0], logits[1])


def test_sampler_is_deterministic_and_batch_independent():
    fam = _family()
    x = jnp.zeros((1, 4, 4, 1), jnp.int32)
    params = fam.init(jax.random.PRNGKey(0), {"image": x, "label": jnp.zeros(1, jnp.int32)})
    # make the distribution non-trivial
    params = jax.tree.map(lambda p: p * 3.0, params)["params"]
    rng = jax.random.PRNGKey(42)
    labels = jnp.array([0, 1, 2, 0])
    sample = jax.jit(fam.sample)
    full = sample(params, sample_keys(rng, 0, 4), labels)
    again = sample(params, sample_keys(rng, 0, 4), labels)
    halves = [sample(params, sample_keys(rng, s, 2), labels[s:s + 2]) for s in (0, 2)]
    np.testing.assert_array_equal(full, again)
    np.testing.assert_array_equal(full, np.concatenate(halves))
    assert full.shape == (4, 4, 4, 1) and set(np.unique(full)) <= {0, 1}
    other = sample(params, sample_keys(jax.random.PRNGKey(7), 0, 4), labels)
    assert not np.array_equal(full, other)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    x = jnp.asarray(np.random.RandomState(1).randint(0, 2, (2, 6, 6, 1)))
    f32 = GatedPixelCNN(levels=2, features=6, num_layers=1, in_kernel=3, out_hidden=6)
    bf16 = f32.clone(dtype=jnp.bfloat16)
    params = f32.init(jax.random.PRNGKey(0), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    a, b = f32.apply(params, x), bf16.apply(params, x)
    assert b.dtype == jnp.float32
    np.testing.assert_allclose(a, b, atol=0.1)


def test_settings_defaults_validation_and_sampling_temperature():
    from ml_collections import ConfigDict

    from argen_jax.config_lib import typed
    from argen_jax.errors import ConfigError
    from argen_jax.models.pixelcnn import PixelCNNSettings

    s = typed(PixelCNNSettings, {"name": "pixelcnn", "features": 12}, "model",
              ignore=("name",))
    assert s.network_fields()["out_hidden"] == 12  # out_hidden 0: the width of the layers
    with pytest.raises(ConfigError, match="model.featurez"):
        typed(PixelCNNSettings, {"featurez": 3}, "model")
    with pytest.raises(ConfigError, match="model.impl"):
        PixelCNNSettings(impl="fft")
    with pytest.raises(ConfigError, match="model.num_layers"):
        PixelCNNSettings(num_layers=0)
    # the draw follows config.sample: at temperature ~0 every key draws the argmax
    cfg = ConfigDict({"model": {"name": "gated_pixelcnn", "features": 6, "num_layers": 1,
                                "in_kernel": 3}, "sample": {"temperature": 1e-6}})
    fam = PixelCNNFamily(cfg, DataSpec((3, 3, 1), 4, 0))
    params = fam.init(jax.random.PRNGKey(0), {"image": jnp.zeros((1, 3, 3, 1), jnp.int32)})
    leaves, tree = jax.tree.flatten(params["params"])  # random biases too: no ties
    params = jax.tree.unflatten(tree, [p + jax.random.normal(jax.random.PRNGKey(i), p.shape)
                                       for i, p in enumerate(leaves)])
    a = jax.jit(fam.sample)(params, sample_keys(jax.random.PRNGKey(1), 0, 3), None)
    b = jax.jit(fam.sample)(params, sample_keys(jax.random.PRNGKey(2), 0, 3), None)
    np.testing.assert_array_equal(a, b)
    assert (np.asarray(a) == np.asarray(a)[:1]).all()
