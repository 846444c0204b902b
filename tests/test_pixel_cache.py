"""Cached generation of the pixel models (`sample.pixel_cache`, Ramachandran et al. 2017):
at every step of the one sampling loop the cached step's outputs equal the full pass's at that
pixel / sub-pixel (PixelCNN, Gated PixelCNN, PixelCNN++ with its down- and up-sampling;
conditional, 1 and 3 channels, both conv implementations), a seed gives the same samples on
both paths, and the lossless codec round-trips on the cached steps at the same code length.
Tiny random models."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from argen_jax.codec import Codec
from argen_jax.data.pipeline import DataSpec
from argen_jax.models.pixelcnn import PixelCNNFamily
from argen_jax.models.pixelcnnpp import PixelCNNPPFamily
from argen_jax.sampling.loop import sample_keys
from tests.model_utils import random_params

# (family class, model section, data shape, classes)
CASES = {
    "pixelcnn_grey": (PixelCNNFamily, {"name": "pixelcnn", "features": 8, "num_layers": 2,
                                       "in_kernel": 5}, (5, 4, 1), 0),
    "pixelcnn_rgb_cond": (PixelCNNFamily, {"name": "pixelcnn", "features": 6, "num_layers": 2,
                                           "conditional": True, "impl": "taps"}, (4, 3, 3), 3),
    "gated_grey_cond": (PixelCNNFamily, {"name": "gated_pixelcnn", "features": 8,
                                         "num_layers": 2, "conditional": True}, (5, 4, 1), 3),
    "gated_rgb": (PixelCNNFamily, {"name": "gated_pixelcnn", "features": 6, "num_layers": 2,
                                   "in_kernel": 3, "impl": "taps"}, (4, 3, 3), 0),
    "pixelcnnpp_rgb_3res": (PixelCNNPPFamily, {"name": "pixelcnnpp", "features": 8,
                                               "num_resnet": 2, "num_resolutions": 3,
                                               "num_mixtures": 2, "dropout": 0.0},
                            (8, 8, 3), 0),
    "pixelcnnpp_grey_cond_2res": (PixelCNNPPFamily, {"name": "pixelcnnpp", "features": 8,
                                                     "num_resnet": 1, "num_resolutions": 2,
                                                     "num_mixtures": 2, "dropout": 0.0,
                                                     "conditional": True, "impl": "taps"},
                                  (6, 4, 1), 4),
}


def _family(name, cached=True):
    cls, model, shape, classes = CASES[name]
    cfg = ConfigDict({"model": model, "sample": {"pixel_cache": cached}})
    fam = cls(cfg, DataSpec(shape, 256, num_classes=classes))
    args = (jnp.zeros((1,) + shape, jnp.int32),) + ((jnp.zeros((1,), jnp.int32),) if classes
                                                     else ())
    return fam, random_params(fam.model, *args, scale=0.2)["params"]


def _uncached(fam):
    cfg = ConfigDict(fam.config.to_dict())
    cfg.sample.pixel_cache = False
    return type(fam)(cfg, fam.spec)


def _forced_outputs(fam, params, images, labels):
    """The step outputs [T, B, ...] of the sampling loop with the true sub-pixels as draws."""
    steps = fam.raster_steps(params, images.shape[0], labels)
    sym = fam.coding_symbols()
    targets = sym.targets(images)  # [T, B, M, S]

    def draw(keys, out, t):
        return sym.to_draw(targets[t]), out

    def write(seq, x, t):
        return steps.write_fn(seq, x[0], t)

    _, (_, outs) = dataclasses.replace(steps, write_fn=write).run(
        draw, sample_keys(jax.random.PRNGKey(0), 0, images.shape[0]))
    return outs


@pytest.mark.parametrize("name", list(CASES))
def test_cached_step_outputs_equal_the_full_pass_at_every_step(name):
    fam, params = _family(name)
    _, _, shape, classes = CASES[name]
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (2,) + shape), jnp.int32)
    labels = jnp.asarray([1, classes - 1]) if classes else None
    run = jax.jit(_forced_outputs, static_argnums=0)
    cached, full = run(fam, params, images, labels), run(_uncached(fam), params, images, labels)
    assert cached.shape[0] == fam.raster_steps(params, 2).num_steps
    np.testing.assert_allclose(cached, full, rtol=1e-4, atol=1e-4)
    assert float(jnp.abs(full).max()) > 0.1  # not trivially zero


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gated_grey_cond", "pixelcnnpp_rgb_3res"])
def test_same_seed_same_samples_cached_and_uncached(name):
    fam, params = _family(name)
    keys = sample_keys(jax.random.PRNGKey(7), 0, 3)
    labels = jnp.arange(3) % 3 if CASES[name][3] else None
    a = jax.jit(fam.sample)(params, keys, labels)
    b = jax.jit(_uncached(fam).sample)(params, keys, labels)
    assert np.array_equal(a, b)
    assert len(np.unique(np.asarray(a))) > 3  # real samples, not a constant canvas


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gated_grey_cond", "pixelcnnpp_grey_cond_2res"])
def test_codec_round_trip_on_the_cached_steps_costs_what_the_full_pass_does(name):
    """Both paths decode their own files bit for bit; their code lengths agree. The bytes
    themselves may differ: the two paths' floats differ in the last bits (another reduction
    order), which moves integer table entries by one (docs/design.md rule 21), so files
    written on one path decode only on it (`--nopixel_cache` for files of the full pass)."""
    fam, params = _family(name)
    shape, classes = CASES[name][2], CASES[name][3]
    keys = sample_keys(jax.random.PRNGKey(1), 0, 3)
    labels = [0, 1, 2]
    data = [x.astype(np.uint8) for x in np.asarray(jax.jit(fam.sample)(
        params, keys, jnp.asarray(labels)))]
    data.append(np.random.default_rng(2).integers(0, 256, shape).astype(np.uint8))
    labels.append(classes - 1)
    bits = []
    for codec in (Codec(fam, params, "r", 1), Codec(_uncached(fam), params, "r", 1)):
        enc = codec.encode(data, labels, batch_size=4)
        dec = codec.decode([e.data for e in enc])
        assert all(np.array_equal(x, y) and lab == v
                   for x, (y, lab), v in zip(data, dec, labels, strict=True))
        bits.append(np.array([e.table_bits for e in enc]))
    np.testing.assert_allclose(bits[0], bits[1], rtol=1e-5)
