"""Sample grids and the papers' FID-50k protocol for any class-conditional token-image run
(converted or trained).

The protocol (`evaluate`): sample k (k < N) has class k % num_classes (N = 50,000: 50 per
class) and key fold_in(PRNGKey(seed), k), so the set does not depend on batch size, device
or process count. Samples are written in shards OUT/samples/shard_XXXXX.npz (uint8 images,
labels; written atomically), so a stopped evaluation resumes at the first missing shard;
OUT/protocol.json pins the settings of the shards (a rerun with other settings is refused).
When every shard is there they are packed as the ADM sample batch OUT/samples_N.npz
(arr_0 uint8 [N, H, W, 3], arr_1 labels) and, given an ADM reference batch, scored with the
Inception-v3 of `evaluation/inception.py` (FID and sFID against the batch's stored mu / sigma
and mu_s / sigma_s, precision / recall against its images' features, IS). Results and the
sampling settings they were made with go to OUT/results.json.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import numpy as np

from argen_jax.errors import ConfigError
from argen_jax.evaluation import reference_stats
from argen_jax.evaluation.extract import extract_features
from argen_jax.evaluation.images import save_image_grid, to_uint8
from argen_jax.evaluation.inception import InceptionExtractor
from argen_jax.evaluation.sample_eval import feature_metrics
from argen_jax.inference import Run, open_run
from argen_jax.io.run_dir import load_run_config
from argen_jax.models.base import images_of
from argen_jax.parallel.distributed import barrier
from argen_jax.pretrained.presets import eval_size, preset

SAMPLING_KEYS = ("temperature", "top_k", "top_p", "cfg_scale", "cfg_schedule", "cfg_interval",
                 "kv_cache_dtype")


def preset_fields(config, preset_name: str = "", **overrides) -> tuple[str, dict]:
    """(name, `config.sample` fields) of a sampling preset (default: the converted run's own,
    else 'run') with `overrides` (None: not overridden) on top."""
    converted = config.get("converted")
    name = preset_name or (converted.get("preset") if converted is not None else "") or "run"
    return name, {**preset(name), **{k: v for k, v in overrides.items() if v is not None}}


def open_preset(workdir: str, preset_name: str = "", **overrides) -> tuple[Run, str, dict]:
    """(the run in `workdir` opened for inference, preset name, sampling settings dict) with
    a sampling preset (`preset_fields`) and overrides."""
    config = load_run_config(workdir)
    name, fields = preset_fields(config, preset_name, **overrides)
    run = open_run(workdir, config, sample=fields)
    if run.spec.kind != "tokens":
        raise ConfigError(f"{workdir!r} is a {run.spec.kind} run: these tools sample "
                          "class-conditional token-image runs (LlamaGen, VAR)")
    settings = dataclasses.asdict(run.sample_settings)
    return run, name, {k: settings[k] for k in SAMPLING_KEYS}


def sample_grid(workdir: str, classes, per_class: int = 4, cfg: float | None = None,
                preset_name: str = "", seed: int = 0, batch_size: int = 0,
                out: str = "") -> str:
    """A grid with one column per class of `classes`, `per_class` rows. Returns its path."""

    run, name, settings = open_preset(workdir, preset_name, cfg_scale=cfg)
    classes = [int(c) for c in classes]
    ncls = run.spec.num_classes
    bad = [c for c in classes if not 0 <= c < ncls]
    if not classes or bad or per_class < 1:
        raise ConfigError(f"--classes must be ids in [0, {ncls}) and --per_class >= 1, got "
                          f"{bad or classes}, {per_class}")
    labels = np.tile(np.asarray(classes, np.int32), per_class)
    tokens = run.sample(len(labels), seed, batch_size=batch_size or len(labels), labels=labels)
    images, levels = images_of(run.family, tokens)
    out = out or os.path.join(workdir, "samples", "grid.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if jax.process_index() == 0:
        save_image_grid(images, out, levels=levels, ncol=len(classes))
        with open(os.path.splitext(out)[0] + ".json", "w") as f:
            json.dump(dict(preset=name, sampling=settings, seed=seed, classes=classes), f)
    print(f"sampling: preset {name} {settings}")
    return out


def shard_path(out: str, i: int) -> str:
    return os.path.join(out, "samples", f"shard_{i:05d}.npz")


def _check_protocol(out: str, protocol: dict) -> None:
    """OUT/protocol.json pins the settings of the shards already there."""
    path = os.path.join(out, "protocol.json")
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        diff = sorted(k for k in set(old) | set(protocol) if old.get(k) != protocol.get(k))
        if diff:
            raise ConfigError(f"{out!r} holds shards of another evaluation (different "
                              f"{', '.join(diff)}): use another --out or delete it")
    elif jax.process_index() == 0:
        os.makedirs(os.path.join(out, "samples"), exist_ok=True)
        with open(path, "w") as f:
            json.dump(protocol, f, indent=2)


def _barrier(name: str) -> None:
    if jax.process_count() > 1:

        barrier(name)


def evaluate(workdir: str, num: int, out: str, ref: str = "", inception="",
             preset_name: str = "", seed: int = 0, shard_size: int = 1000,
             batch_size: int = 0, feature_batch_size: int = 200, max_shards: int = 0,
             pr_k: int = 3, image_size: int = -1) -> dict:
    """The protocol of the module docstring. `inception`: the weights .npz (or an
    `InceptionExtractor`); `max_shards` > 0 stops after that many new shards (complete=False
    in the result: run again to resume); `image_size`: the side samples are stored and scored
    at (-1: the preset's `eval_size`, 0: the run's own). Returns the result dict (also
    OUT/results.json)."""
    if num < 1 or shard_size < 1 or max_shards < 0 or image_size < -1:
        raise ConfigError(f"--num and --shard_size must be >= 1, --max_shards >= 0 and "
                          f"--image_size >= -1, got {num}, {shard_size}, {max_shards}, "
                          f"{image_size}")
    if ref and not inception:
        raise ConfigError("--ref needs --inception (the Inception-v3 weights .npz: see "
                          "argen_jax/evaluation/inception.py)")
    out = os.path.abspath(os.path.expanduser(out))
    run, name, settings = open_preset(workdir, preset_name)
    size = eval_size(name) if image_size < 0 else image_size
    h, w = run.family.tokenizer.spec.shape[:2]  # the decoded images' own side
    size = 0 if (size, size) == (h, w) else size
    protocol = dict(workdir=os.path.abspath(workdir), num=num, seed=seed,
                    shard_size=shard_size, preset=name, sampling=settings,
                    labels="k % num_classes", image_size=size)
    _check_protocol(out, protocol)
    print(f"sampling: preset {name} {settings}"
          + (f", scored at {size}x{size} (PyTorch bicubic)" if size else ""))
    shards = math.ceil(num / shard_size)
    # samples per call: the run's sample.batch_size unless given, never a whole shard at once
    # (a 1,000-sample shard in one call holds 2,000 KV caches under CFG)
    batch_size = batch_size or run.sample_settings.batch_size or shard_size
    new, sampled, t_sample, t_decode = 0, 0, 0.0, 0.0
    for i in range(shards):
        if os.path.exists(shard_path(out, i)):
            continue
        if max_shards and new >= max_shards:
            break
        lo, hi = i * shard_size, min(num, (i + 1) * shard_size)
        t0 = time.time()
        tokens = run.sample(hi - lo, seed, start_index=lo, batch_size=min(batch_size, hi - lo))
        t1 = time.time()
        images, levels = images_of(run.family, tokens, size)
        images = to_uint8(images, levels)
        t_sample, t_decode = t_sample + time.time() - t0, t_decode + time.time() - t1
        if jax.process_index() == 0:
            labels = (np.arange(lo, hi) % max(run.spec.num_classes, 1)).astype(np.int64)
            tmp = shard_path(out, i) + ".tmp.npz"
            np.savez(tmp, arr_0=images, arr_1=labels)
            os.replace(tmp, shard_path(out, i))
        new, sampled = new + 1, sampled + hi - lo
        print(f"shard {i + 1}/{shards}: {hi - lo} samples, {sampled / t_sample:.3f} samples/s "
              f"({t_decode / t_sample:.0%} of the time decoding tokens to images)")
    _barrier("shards")
    complete = all(os.path.exists(shard_path(out, i)) for i in range(shards))
    result = dict(complete=complete, num=num, preset=name, sampling=settings, seed=seed,
                  image_size=size or h, new_shards=new,
                  samples_per_s=sampled / t_sample if t_sample else None,
                  decode_fraction=t_decode / t_sample if t_sample else None)
    if not complete:
        print(f"stopped after {new} new shards: run the same command again to resume")
        return result
    result.update(_pack_and_score(run, out, num, shards, ref, inception, feature_batch_size,
                                  pr_k))
    if jax.process_index() == 0:
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(result, f, indent=2, default=float)
    return result


def _pack_and_score(run, out, num, shards, ref, inception, feature_batch_size, pr_k) -> dict:
    parts = []
    for i in range(shards):
        with np.load(shard_path(out, i)) as f:
            parts.append((f["arr_0"], f["arr_1"]))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    batch = os.path.join(out, f"samples_{num}.npz")
    if jax.process_index() == 0 and not os.path.exists(batch):
        reference_stats.write_sample_batch(batch, images, labels)
    res: dict = {"sample_batch": batch}
    if not ref:
        return res

    ext = (InceptionExtractor(os.path.expanduser(inception)) if isinstance(inception, str)
           else inception)
    t0 = time.time()
    fake = extract_features(ext, images, 256, feature_batch_size, run.mesh,
                            desc="sample features")
    res["features_per_s"] = len(images) / (time.time() - t0)
    ref = os.path.expanduser(ref)
    key = f"ref-{os.path.basename(ref)}-{os.path.getsize(ref)}-{ext.key}"
    ref_feats = reference_stats.cached_features(
        os.path.join(out, "cache"), key,
        lambda: extract_features(ext, reference_stats.read_images(ref), 256,
                                 feature_batch_size, run.mesh, desc="reference features"))
    pool, spatial = reference_stats.read_stats(ref)
    m = feature_metrics(ref_feats, fake, ext.suffix, pr_k, {"pool": pool, "spatial": spatial})
    res["metrics"] = {f"eval_samples/{k}": float(v) for k, v in m.items()}
    res["reference"] = ref
    print(json.dumps(res["metrics"]))
    return res
