"""Zero-shot in-painting and out-painting with a trained VAR (no training for the task).

Test images are tokenized; the tokens of a kept region are teacher-forced at every scale (a
token of scale s is kept iff every finest-scale cell it covers is kept) and the rest is
sampled, conditioned on the image's class with CFG. Rows of the grid (one column per test
image, the first of each class): the tokenizer's reconstruction, the kept region (the rest
grey), in-painting of the centre 4x4 of the 8x8 token map, out-painting of the right half.

    python -m experiments.var.inpaint --workdir=/tmp/var/cpu --out=/work/notes/figs/var_inpaint.png
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from argen_jax.evaluation.images import save_image_grid
from argen_jax.io.run_dir import load_config
from argen_jax.sampling.loop import sample_keys
from argen_jax.train.loop import restore_experiment


def masks(p: int) -> dict[str, np.ndarray]:
    """Keep-masks over the finest p x p token map: True = known."""
    centre = np.ones((p, p), bool)
    centre[p // 4: p - p // 4, p // 4: p - p // 4] = False
    left = np.zeros((p, p), bool)
    left[:, : p // 2] = True
    return {"inpaint_centre": centre, "outpaint_right": left}


def grey_out(images: np.ndarray, keep: np.ndarray, pad: int, levels: int) -> np.ndarray:
    """Images [B, H, W, C] with the pixels of unkept token cells set to mid-grey."""
    h = images.shape[1]
    cell = (h + 2 * pad) // keep.shape[-1]
    m = np.kron(keep, np.ones((cell, cell), bool))[pad: pad + h, pad: pad + h]
    return np.where(m[None, :, :, None], images, (levels - 1) // 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", default="/work/notes/figs/var_inpaint.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    config = load_config(args.workdir, what="a VAR run directory")
    exp, state = restore_experiment(config, args.workdir)
    fam, params = exp.family, exp.eval_params(state)
    data = exp.data
    labels = np.asarray(data.test_labels)
    idx = np.array([int(np.flatnonzero(labels == c)[0]) for c in range(fam.num_classes)])
    images = data.test_images()[idx]
    tok = fam.tokenizer
    levels = fam.image_levels
    recon = np.asarray(tok.reconstruct(jnp.asarray(images)))
    p = fam.scales[-1]
    pad = (tok.size[0] - images.shape[1]) // 2
    keys = sample_keys(jax.random.PRNGKey(args.seed), 0, len(idx))
    gen = jax.jit(fam.generate)
    rows = [recon]
    for keep in masks(p).values():
        kb = np.broadcast_to(keep, (len(idx), p, p))
        known, known_mask = fam.known_from_images(jnp.asarray(images), kb)
        out = gen(params, keys, jnp.asarray(labels[idx]), known, known_mask)
        rows += [grey_out(recon, keep, pad, levels), fam.to_images(np.asarray(out))]
    grid = np.concatenate(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_image_grid(grid, args.out, levels=levels, ncol=len(idx))
    print(json.dumps({"out": args.out, "rows": ["reconstruction", "kept (centre masked)",
                                                "in-painted", "kept (left half)",
                                                "out-painted"]}))


if __name__ == "__main__":
    main()
