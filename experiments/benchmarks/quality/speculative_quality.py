"""Speculative Jacobi decoding on a trained LlamaGen (or IGPT) run: speed and sample quality,
plain vs speculative (`sample.speculative=W`), in one run (issue 22, must-show 2).

Draws `--num` samples each way with the run's sampling settings (CFG, temperature, top-k /
top-p from its config.json; flags override them) at batch `--batch`, sample k with key
fold_in(PRNGKey(seed), k) and class k % num_classes, as `--mode=eval` does, and reports

    passes_per_image   sequential forward passes per image after the class prompt's prefill
                       (a batch shares them; the plain sampler: one per token)
    tokens_per_pass    tokens per image / passes_per_image (accepted tokens per pass)
    s_per_image        wall time per image (after compilation), at batch `--batch` over the
                       whole set and at batch 1 over `--timing_batches` images
    fd / precision / recall   of the decoded samples against the test split, with the run's
                       `config.eval` feature network (`eval.feature_net`: the small
                       Fashion-MNIST classifier of `eval_samples/fd_smallnet`, not FID)

plus the same metrics for a second plain set with another seed (`plain_reseeded`): the noise
two sample sets of this size show, against which the plain / speculative gap is judged.
Prints one JSON line.

    python -m experiments.benchmarks.quality.speculative_quality --workdir=runs/llamagen \
        --num=2000 --speculative=8 [--feature_net=/tmp/featnet/fashion_mnist.npz]
"""
from __future__ import annotations

import jax
import numpy as np
from absl import flags

from argen_jax.errors import ConfigError
from argen_jax.evaluation.sample_eval import build_extractor
from argen_jax.io.run_dir import load_config
from argen_jax.models.base import images_of
from argen_jax.models.transformer import sample_decoder
from argen_jax.sampling.loop import sample_keys
from argen_jax.train.loop import _restored
from argen_jax.train.sample_metrics import reference_features, score_images
from experiments.benchmarks import common

FAMILIES = ("llamagen", "igpt")  # the families `sample_decoder` samples

flags.DEFINE_string("workdir", None, "A trained llamagen / igpt run.", required=True)
flags.DEFINE_integer("num", 2000, "Samples each way (quality).")
flags.DEFINE_integer("speculative", 8, "Window of drafts W.")
flags.DEFINE_integer("batch", 8, "Samples drawn at once.")
flags.DEFINE_integer("timing_batches", 16, "Batch-1 images timed.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("feature_net", "", "Overrides config.eval.feature_net.")
flags.DEFINE_float("cfg_scale", None, "Overrides config.sample.cfg_scale.")
flags.DEFINE_float("temperature", None, "Overrides config.sample.temperature.")
flags.DEFINE_integer("top_k", None, "Overrides config.sample.top_k.")
flags.DEFINE_float("top_p", None, "Overrides config.sample.top_p.")


def sampler(fam, settings):
    """jitted (params, keys, labels) -> (tokens [B, L], sequential passes)."""

    @jax.jit
    def sample(params, keys, labels):
        labels, null = fam.classes.for_sampling(labels, keys.shape[0], settings.guided)
        return sample_decoder(fam.model, params, keys, labels, null, fam.num_tokens, settings,
                              with_passes=True)

    return sample


def draw(fn, params, num: int, batch: int, seed: int, num_classes: int):
    """(samples [num, L], passes per batch, seconds after compilation) of sample k =
    fold_in(PRNGKey(seed), k) with class k % num_classes, `batch` at a time."""
    rng = jax.random.PRNGKey(seed)

    def call(start):
        keys = sample_keys(rng, start, batch)
        labels = (np.arange(start, start + batch) % num_classes).astype(np.int32)
        return fn(params, keys, labels)

    jax.block_until_ready(call(0))  # compile
    out, passes = [], []
    starts = range(0, num, batch)
    next_start = iter(starts)

    def one_batch():
        tokens, p = call(next(next_start))
        out.append(np.asarray(tokens))
        passes.append(int(p))

    seconds = sum(common.times(one_batch, repeats=len(starts), warmup=0))
    return np.concatenate(out)[:num], passes, seconds


def speed(passes, seconds: float, num: int, tokens: int) -> dict:
    per_image = float(np.mean(passes))
    return {"passes_per_image": round(per_image, 2),
            "tokens_per_pass": round(tokens / per_image, 3),
            "s_per_image": round(seconds / num, 5)}


def main(argv):
    del argv
    a = flags.FLAGS
    if a.speculative < 1 or a.num < 1 or a.batch < 1:
        raise ConfigError("--speculative, --num and --batch must be >= 1")
    config = load_config(a.workdir, what="a LlamaGen run directory")
    if config.model.name not in FAMILIES:
        raise ConfigError(f"{a.workdir!r} is a {config.model.name!r} run: speculative "
                          f"decoding samples {FAMILIES}")
    if a.feature_net:
        config.eval.feature_net = a.feature_net
    for key in ("cfg_scale", "temperature", "top_k", "top_p"):
        if getattr(a, key) is not None:
            config.sample[key] = getattr(a, key)
    config.sample.speculative = 0
    exp, state = _restored(config, a.workdir)
    extractor = build_extractor(exp.eval_settings)  # before the sampling: a missing net fails
    fam, params = exp.family, exp.eval_params(state)
    ncls = max(exp.data.spec.num_classes, 1)
    n_tok = fam.num_tokens
    settings = {"plain": fam.sampling, "speculative": fam.sampling.replace(
        speculative=a.speculative)}
    row = {"benchmark": "speculative_quality", "device": jax.devices()[0].platform,
           "workdir": a.workdir, "num": a.num, "batch": a.batch, "window": a.speculative,
           "tokens_per_image": n_tok,
           "sampling": {k: getattr(fam.sampling, k) for k in (
               "cfg_scale", "cfg_schedule", "cfg_interval", "temperature", "top_k", "top_p")}}
    ref, levels = None, None
    sets = [("plain", a.seed), ("speculative", a.seed), ("plain_reseeded", a.seed + 1)]
    for name, seed in sets:
        fn = sampler(fam, settings[name.split("_")[0]])
        tokens, passes, secs = draw(fn, params, a.num, a.batch, seed, ncls)
        out = {f"batch{a.batch}": speed(passes, secs, len(tokens), n_tok)}
        if name != "plain_reseeded":
            _, p1, s1 = draw(fn, params, a.timing_batches, 1, seed, ncls)
            out["batch1"] = speed(p1, s1, a.timing_batches, n_tok)
        images, levels = images_of(fam, tokens.reshape(len(tokens), *fam.spec.shape))
        if ref is None:
            ref = reference_features(exp, extractor, a.workdir, levels)
        out.update({k: round(float(v), 5) for k, v in score_images(
            exp, extractor, ref, images, levels).items()})
        row[name] = out
    common.emit(row)


if __name__ == "__main__":
    common.run(main)
