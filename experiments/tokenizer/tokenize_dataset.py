"""Turn an image dataset into token maps for the AR models (LlamaGen: one map; VAR: per scale).

    python -m experiments.tokenizer.tokenize_dataset --workdir=/tmp/tok/fm_single \
        --out=/tmp/tok/fashion_mnist_tokens.npz [--png=/tmp/tok/recon.png]

Reads the tokenizer's config (workdir/config.json) and newest checkpoint, tokenizes the train
and test splits of the data the tokenizer was trained on (an image folder, data.kind=
'image_folder': every image once, read lazily and centre-cropped at data.resolution, as ADM
and LlamaGen's evaluation do; `--data_path` points at the folder on another machine), and
writes one .npz:
    {split}_tokens  int16/int32 [N, L]: single scale: the h x w map in raster order (L = h*w);
                    multi-scale: the maps of every scale flattened coarse to fine
                    (L = sum p_s^2; `layers.quantizer.split_scales` undoes it)
    {split}_labels  int32 [N]
    token_shape     [h, w] of the (finest) token map;  scales  [S] (multi-scale, else [h])
    codebook_size, multiscale, step (of the tokenizer checkpoint), tokenizer_workdir
and prints (and stores under `stats_json`) the codebook usage and perplexity over each whole
split, per scale for the multi-scale quantizer. `--png` writes originals (top rows) above their
reconstructions (bottom rows).

Sharded, resumable, multi-process (ImageNet scale; `argen_jax/data/token_shards.py`):

    python -m experiments.tokenizer.tokenize_dataset --workdir=/tmp/tok/in256 \
        --shards=/data/in256_tokens [--shard_size=10000] [--augment=tencrop] \
        [--process_index=0 --process_count=2]

writes fixed-size .npy shards plus index.json instead of the .npz; process p of P writes the
shards k with k % P == p (start one command per process, or let jax.process_index() /
process_count() decide); a killed job rerun with the same flags skips finished shards.
--augment (train split only; the test split stores centre crops): 'flip' stores the centre
crop and its flip, 'tencrop' LlamaGen's ten crops + flips (image-folder data only). Point
data.path of a LlamaGen / VAR config at the directory.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from argen_jax.data import preprocess
from argen_jax.data import token_shards as ts
from argen_jax.data.builders import build_data
from argen_jax.data.pipeline import sequential_batches
from argen_jax.errors import CheckpointError, ConfigError, UserError
from argen_jax.io.run_dir import load_config
from argen_jax.layers import quantizer as qlib
from argen_jax.models.tokenizer import Tokenizer


def _usage(tokens: np.ndarray, k: int) -> tuple[float, float]:
    counts = np.bincount(tokens.reshape(-1), minlength=k).astype(np.float64)
    p = counts / counts.sum()
    nz = p[p > 0]
    return float((counts > 0).mean()), float(np.exp(-(nz * np.log(nz)).sum()))


def split_batches(data, split_set, batch_size: int):
    """Every image of a split once, in order, in batches {'image', 'label', 'mask'}: from the
    in-memory array of small datasets, or read lazily and centre-cropped (ADM's crop, the
    evaluation transform) from an image folder (data.kind='image_folder')."""
    if hasattr(split_set, "images"):
        images, labels = split_set.images, np.asarray(split_set.labels)
        return sequential_batches(len(images), batch_size,
                                  lambda i: {"image": images[i], "label": labels[i]})
    from argen_jax.data.grain_loader import GrainLoader

    s = data.settings
    return iter(GrainLoader(split_set, data.eval_transform, batch_size, data.seed,
                            shuffle=False, worker_count=s.worker_count,
                            num_threads=s.num_threads, prefetch=s.prefetch))


def tokenize_split(tok: Tokenizer, batches) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [N, L], labels int32 [N]) of every real row of `batches`."""
    out, labels = [], []
    for batch in batches:
        keep = batch["mask"] > 0
        idx = tok.encode(batch["image"])
        flat = qlib.flatten_scales(idx) if tok.multiscale else idx.reshape(idx.shape[0], -1)
        out.append(np.asarray(flat)[keep])
        labels.append(np.asarray(batch["label"], np.int32)[keep])
    tokens = np.concatenate(out)
    return (tokens.astype(np.int16 if tok.codebook_size <= 32767 else np.int32),
            np.concatenate(labels))


def split_stats(tok: Tokenizer, tokens: np.ndarray) -> dict:
    k = tok.codebook_size
    usage, ppl = _usage(tokens, k)
    st = {"usage": usage, "perplexity": ppl, "num_examples": int(len(tokens))}
    if tok.multiscale:
        per = qlib.split_scales(tokens, tok.scales)
        st["usage_per_scale"] = [_usage(np.asarray(t), k)[0] for t in per]
        st["perplexity_per_scale"] = [_usage(np.asarray(t), k)[1] for t in per]
    return st


def _data_config(config, data_path: str | None, full: bool, skip_damaged: bool) -> None:
    """The tokenizer run's data section, re-pointed / widened / made tolerant in place."""
    if data_path:
        config.data.path = data_path
    if full:
        config.data.train_limit = config.data.test_limit = 0
    if skip_damaged:
        kind = config.data.get("kind", "image")
        if kind != "image_folder":
            raise ConfigError(f"--skip_damaged is for image folders; the tokenizer's data.kind "
                              f"is {kind!r}")
        config.data.skip_damaged = True


def tokenize(workdir: str, out: str, splits=("train", "test"), batch_size: int = 500,
             png: str | None = None, data_path: str | None = None, full: bool = True,
             skip_damaged: bool = False) -> dict:
    """full: tokenize whole splits even if the run limited them (data.*_limit);
    skip_damaged: a damaged image is replaced by the next readable one (logged)."""
    config = load_config(workdir, CheckpointError, "a tokenizer workdir")
    _data_config(config, data_path, full, skip_damaged)
    tok = Tokenizer.load(workdir)
    data = build_data(config.data, config.seed)  # the splits the tokenizer was trained on
    sets = {"train": data.train_set, "test": data.test_set}
    arrays, stats = {}, {}
    for split in splits:
        t0 = time.time()
        tokens, labels = tokenize_split(tok, split_batches(data, sets[split], batch_size))
        arrays[f"{split}_tokens"] = tokens
        arrays[f"{split}_labels"] = labels
        stats[split] = split_stats(tok, tokens)
        stats[split]["seconds"] = round(time.time() - t0, 1)
    shape = tok.token_shapes[-1]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez(out, token_shape=np.asarray(shape, np.int32),
             scales=np.asarray(tok.scales if tok.multiscale else [shape[0]], np.int32),
             codebook_size=np.int32(tok.codebook_size), multiscale=np.bool_(tok.multiscale),
             step=np.int32(tok.step), tokenizer_workdir=np.asarray(os.path.abspath(workdir)),
             stats_json=np.asarray(json.dumps(stats)), **arrays)
    if png:
        test = sets["test"]  # 16 spread over the split (patches come photo by photo)
        pick = np.linspace(0, len(test) - 1, 16).astype(int)
        if hasattr(test, "images"):
            images = test.images[pick]
        else:  # an image folder: the same centre crops as the tokens
            images = np.stack([data.eval_transform(test[int(i)], 0)["image"] for i in pick])
        write_reconstruction_png(tok, images, png)
    return stats


def write_reconstruction_png(tok: Tokenizer, images: np.ndarray, path: str) -> str:
    """Originals (top two rows of 8) above their reconstructions (bottom two rows)."""
    from argen_jax.evaluation.images import save_image_grid

    rec = np.asarray(jax.device_get(tok.reconstruct(images)))
    grid = np.concatenate([images.astype(np.int32), rec], axis=0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_image_grid(grid, path, levels=tok.image_levels, ncol=8)
    return path


# --------------------------------------------------------------------------- sharded store
def example_reader(data, split: str, augment: str, threads: int = 8):
    """(size, read) of a split of a data builder, read(idx) -> (uint8 [n, A, H, W, C], int32
    labels [n]): in-memory image sets (data.kind 'image', 'photo_patches') or an image folder
    or TFDS source ('image_folder': centre crops at data.resolution, LlamaGen's code-extraction
    crops; labels come with the records read, so a lazy source is never read whole)."""
    s = data.train_set if split == "train" else data.test_set
    if hasattr(s, "images"):  # an in-memory ImageSet
        if augment == "tencrop":
            raise ConfigError("--augment=tencrop needs an image-folder data source "
                              "(data.kind='image_folder'); this one holds fixed-size arrays")
        labels = np.asarray(s.labels, np.int32)

        def read(idx):
            x = s.images[np.asarray(idx)]
            x = x[:, None] if augment == "none" else np.stack([x, preprocess.hflip(x)], 1)
            return x, labels[np.asarray(idx)]

        return len(s), read
    res = data.settings.resolution
    crop = {"none": lambda im: preprocess.center_crop_arr(im, res)[None],
            "flip": lambda im: preprocess.center_flip_arr(im, res),
            "tencrop": lambda im: preprocess.ten_crop_flip_arr(im, res)}[augment]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max(1, threads))  # PIL decodes and resizes without the GIL

    def one(i):
        image, label = s[int(i)]
        return crop(image), label

    def read(idx):
        maps, labels = zip(*pool.map(one, idx), strict=True)
        return np.stack(maps), np.asarray(labels, np.int32)

    return len(s), read


def encode_maps(tok, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 [n, A, H, W, C] -> int [n, A, L] (fixed-size padded batches: a shard's tokens
    do not depend on where a job started)."""
    n, a = images.shape[:2]
    flat = images.reshape((n * a,) + images.shape[2:])
    return encode_images(tok, flat, batch_size).reshape(n, a, -1)


def encode_images(tok, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> tokens [N, L], in fixed-size batches (the last one padded)."""
    no_labels = np.zeros((len(images),), np.int32)
    batches = sequential_batches(len(images), batch_size,
                                 lambda i: {"image": images[i], "label": no_labels[i]})
    return tokenize_split(tok, batches)[0]


def write_token_shards(tok, data, directory: str, splits=("train", "test"),
                       batch_size: int = 500, shard_size: int = 10000, augment: str = "none",
                       process_index: int = 0, process_count: int = 1,
                       progress: bool = True, tokenizer_workdir: str = "",
                       read_threads: int = 8) -> dict:
    """This process's shards of `splits` of `data` (a data builder) tokenized by `tok`;
    finished shards are skipped. Returns {'written', 'skipped', 'complete', 'stats'?}."""
    from tqdm import tqdm

    readers = {sp: example_reader(data, sp, augment if sp == "train" else "none", read_threads)
               for sp in splits}
    shape = tok.token_shapes[-1]
    index = ts.make_index(
        token_shape=shape, scales=tok.scales if tok.multiscale else [shape[0]],
        multiscale=tok.multiscale, codebook_size=tok.codebook_size,
        splits={sp: r[0] for sp, r in readers.items()}, shard_size=shard_size,
        augment=augment, tokenizer_workdir=tokenizer_workdir, tokenizer_step=int(tok.step))
    writer = ts.ShardWriter(directory, index, process_index, process_count)
    todo = {sp: writer.pending(sp) for sp in splits}
    skipped = sum(len(writer.my_shards(sp)) - len(todo[sp]) for sp in splits)
    total = sum(np.diff(writer.shard_range(sp, k))[0] for sp in splits for k in todo[sp])
    with tqdm(total=int(total), unit="img", disable=not progress,
              desc=f"tokenizing (process {process_index}/{process_count})") as bar:
        for sp in splits:
            read = readers[sp][1]
            for k in todo[sp]:
                lo, hi = writer.shard_range(sp, k)
                images, labels = read(np.arange(lo, hi))
                maps = encode_maps(tok, images, batch_size)
                writer.write_shard(sp, k, maps if maps.shape[1] > 1 else maps[:, 0], labels)
                bar.update(hi - lo)
    out = {"written": sum(len(v) for v in todo.values()), "skipped": skipped,
           "complete": writer.finalize()}
    if out["complete"]:
        out["stats"] = writer.index["stats"]
    else:  # this process is done; the store is not yet: say what it waits for
        missing = {sp: ts.missing_shards(directory, writer.index, sp) for sp in splits}
        owners = sorted({k % process_count for v in missing.values() for k in v})
        out["waiting_for"] = (
            f"this process's shards are done; the store completes when process(es) "
            f"{', '.join(map(str, owners))} of {process_count} write their "
            f"{sum(map(len, missing.values()))} remaining shard(s) ("
            + "; ".join(f"{sp}: {v[:8]}{' ...' if len(v) > 8 else ''}"
                        for sp, v in missing.items() if v) + ")")
    return out


def tokenize_to_shards(workdir: str, directory: str, splits=("train", "test"),
                       batch_size: int = 500, data_path: str | None = None, full: bool = True,
                       shard_size: int = 10000, augment: str = "none",
                       process_index: int | None = None, process_count: int | None = None,
                       progress: bool = True, png: str | None = None,
                       skip_damaged: bool = False) -> dict:
    """`tokenize` writing a shard store (resumable; this process's shards only)."""
    config = load_config(workdir, CheckpointError, "a tokenizer workdir")
    if augment not in ts.AUGMENTATIONS:
        raise ConfigError(f"--augment={augment!r}: one of {sorted(ts.AUGMENTATIONS)}")
    kind = config.data.get("kind", "image")
    if augment == "tencrop" and kind != "image_folder":
        raise ConfigError(f"--augment=tencrop needs an image-folder data source; the "
                          f"tokenizer's data.kind is {kind!r}")
    _data_config(config, data_path, full, skip_damaged)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    tok = Tokenizer.load(workdir)
    data = build_data(config.data, config.seed)
    try:
        out = write_token_shards(tok, data, directory, splits, batch_size, shard_size, augment,
                                 process_index, process_count, progress,
                                 os.path.abspath(workdir))
        if png and process_index == 0 and "test" in splits:
            n, read = example_reader(data, "test", "none")
            images = read(np.linspace(0, n - 1, 16).astype(int))[0]
            write_reconstruction_png(tok, images[:, 0], png)
    finally:
        if hasattr(data, "close"):
            data.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True, help="tokenizer training workdir")
    ap.add_argument("--out", default="", help="output .npz (or --shards)")
    ap.add_argument("--shards", default="", help="write a resumable shard store in this "
                    "directory instead of the .npz")
    ap.add_argument("--shard_size", type=int, default=10000, help="examples per shard")
    ap.add_argument("--augment", default="none", choices=sorted(ts.AUGMENTATIONS),
                    help="stored augmentations of the train split (--shards only; tencrop: "
                    "image-folder data only)")
    ap.add_argument("--process_index", type=int, default=None,
                    help="this process (default jax.process_index())")
    ap.add_argument("--process_count", type=int, default=None,
                    help="processes sharing the job (default jax.process_count())")
    ap.add_argument("--splits", default="train,test")
    ap.add_argument("--batch_size", type=int, default=500)
    ap.add_argument("--png", default="", help="also write originals vs reconstructions here")
    ap.add_argument("--data_path", default="", help="override config.data.path")
    ap.add_argument("--keep_limits", action="store_true",
                    help="keep the run's data.train_limit / test_limit (default: whole splits)")
    ap.add_argument("--skip_damaged", action="store_true",
                    help="image folders: replace a damaged image by the next readable one "
                    "(each logged, with a count) instead of stopping")
    a = ap.parse_args()
    if bool(a.out) == bool(a.shards):
        ap.error("give exactly one of --out=FILE.npz and --shards=DIR")
    if a.augment != "none" and not a.shards:
        ap.error("--augment needs --shards")
    try:  # a user's mistake or a damaged file: one line, exit 2 (as the launcher)
        if a.shards:
            out = tokenize_to_shards(
                a.workdir, a.shards, tuple(a.splits.split(",")), a.batch_size,
                a.data_path or None, not a.keep_limits, a.shard_size, a.augment,
                a.process_index, a.process_count, png=a.png or None,
                skip_damaged=a.skip_damaged)
            out = {"shards": a.shards, **out}
        else:
            out = {"out": a.out, **tokenize(
                a.workdir, a.out, tuple(a.splits.split(",")), a.batch_size, a.png or None,
                a.data_path or None, not a.keep_limits, a.skip_damaged)}
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
