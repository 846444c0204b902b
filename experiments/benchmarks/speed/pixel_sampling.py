"""Sampling speed of the pixel models, cached steps (`sample.pixel_cache=True`, Ramachandran
et al. 2017) against the full pass per step (the reference), side by side in one run.

Random parameters (speed does not depend on training); the data shape comes from the flags,
so no data are read. Both paths are the family's own sampler (`Family.sample`, the one
sampling loop), jitted and run once untimed (compilation) before the best of --repeats.
With `--uncached_steps=N` the uncached path runs only its first N steps and its image time is
extrapolated linearly (time of N steps x total steps / N: every full pass costs the same);
the row says so (`uncached_extrapolated_from_steps`).

With `--codec_images=N` the lossless codec (`argen_jax.codec`) also encodes and decodes N
random images of the shape (one batch of N, after a warm-up round trip that compiles) on both
paths: encode / decode images/s, whether the files are byte-identical between the paths and
whether every file decodes to its image.

    python -m experiments.benchmarks.speed.pixel_sampling \
        --config=experiments/pixelcnnpp/patches.py:cpu --shape=32,32,3 --batch=16
    python -m experiments.benchmarks.speed.pixel_sampling \
        --config=experiments/pixelcnn/mnist.py:8bit --shape=28,28,1 --classes=10 --batch=1
    python -m experiments.benchmarks.speed.pixel_sampling \
        --config=experiments/pixelcnnpp/fashion_mnist.py:cpu --shape=28,28,1 --codec_images=4
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from argen_jax import registry
from argen_jax.data.pipeline import DataSpec
from argen_jax.sampling.loop import sample_keys
from experiments.benchmarks import common

_CONFIG = common.config_flag("experiments/pixelcnnpp/patches.py:cpu")
_BATCH = flags.DEFINE_integer("batch", 1, "Images sampled together.")
_SHAPE = flags.DEFINE_list("shape", ["32", "32", "3"], "Image shape H,W,C.")
_LEVELS = flags.DEFINE_integer("levels", 256, "Levels per sub-pixel.")
_CLASSES = flags.DEFINE_integer("classes", 0, "Classes (a conditional model needs them).")
_UNCACHED_STEPS = flags.DEFINE_integer(
    "uncached_steps", 0, "Time only the first N steps of the uncached path and extrapolate "
    "(0: whole images).")
_CODEC = flags.DEFINE_integer("codec_images", 0, "Also time the codec on N images (0: no).")
common.timing_flags(repeats=2, warmup=1)


def _codec_times(family, params, images, labels) -> dict:
    from argen_jax.codec import Codec

    codec = Codec(family, params, "bench", 0)
    n = len(images)
    codec.decode([e.data for e in codec.encode(images, labels, n)])  # compile
    with common.Stopwatch() as enc_sw:
        enc = codec.encode(images, labels, n)
    with common.Stopwatch() as dec_sw:
        dec = codec.decode([e.data for e in enc])
    exact = all(np.array_equal(x, y) for x, (y, _) in zip(images, dec, strict=True))
    return {"encode": n / enc_sw.seconds, "decode": n / dec_sw.seconds,
            "files": [e.data for e in enc],
            "exact": exact}


def main(argv):
    del argv
    config = _CONFIG.value
    shape = tuple(int(s) for s in _SHAPE.value)
    spec = DataSpec(shape, _LEVELS.value, num_classes=_CLASSES.value)
    batch = _BATCH.value
    keys = sample_keys(jax.random.PRNGKey(0), 0, batch)
    labels = jnp.arange(batch) % max(_CLASSES.value, 1)
    row = {"benchmark": "pixel_sampling", "config": common.config_spec(_CONFIG),
           "model": config.model.name, "shape": list(shape), "batch": batch,
           "device": jax.devices()[0].device_kind}
    params, codec = None, {}
    for cached in (True, False):
        config.sample.pixel_cache = cached
        family = registry.build_family(config, spec)
        if params is None:
            dummy = {"image": jnp.zeros((1,) + shape, jnp.int32),
                     "label": jnp.zeros((1,), jnp.int32)}
            params = jax.jit(family.init)(jax.random.PRNGKey(0), dummy)["params"]
        total = family.raster_steps(params, batch).num_steps
        n = total if cached or not _UNCACHED_STEPS.value else min(_UNCACHED_STEPS.value, total)
        if n == total:
            fn = jax.jit(family.sample)
        else:
            def fn(p, k, lab, family=family, n=n):
                steps = dataclasses.replace(family.raster_steps(p, batch, lab), num_steps=n)
                return steps.run(family.raster_draw(), k)[0].seq
            fn = jax.jit(fn)
        seconds = common.best_time(fn, params, keys, labels if family.conditional else None)
        image_s = seconds * total / n
        name = "cached" if cached else "uncached"
        row[f"{name}_images_per_s"] = batch / image_s
        row[f"{name}_seconds_per_batch"] = image_s
        if n != total:
            row["uncached_extrapolated_from_steps"] = n
        if _CODEC.value:
            rng = np.random.default_rng(0)
            images = list(rng.integers(0, spec.levels, (_CODEC.value,) + shape).astype(np.uint8))
            lab = [k % _CLASSES.value for k in range(_CODEC.value)] if family.conditional \
                else None
            codec[name] = _codec_times(family, params, images, lab)
            row[f"codec_{name}_encode_images_per_s"] = codec[name]["encode"]
            row[f"codec_{name}_decode_images_per_s"] = codec[name]["decode"]
    row["speedup"] = row["cached_images_per_s"] / row["uncached_images_per_s"]
    if _CODEC.value:
        row["codec_files_identical"] = codec["cached"]["files"] == codec["uncached"]["files"]
        row["codec_decoded_exact"] = codec["cached"]["exact"] and codec["uncached"]["exact"]
    common.emit({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})


if __name__ == "__main__":
    common.run(main)
