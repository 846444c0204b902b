"""python -m argen_jax.pretrained {convert,sample,evaluate}: see argen_jax/pretrained/__init__.py.

    python -m argen_jax.pretrained convert --system=llamagen --gpt=c2i_B_256.pt \
        --vq=vq_ds16_c2i.pt --out=/tmp/llamagen_B            [--size=B] [--heads=N]
    python -m argen_jax.pretrained convert --system=var --var=var_d16.pth \
        --vae=vae_ch160v4096z32.pth --out=/tmp/var_d16
    python -m argen_jax.pretrained sample --workdir=/tmp/var_d16 --classes=207,360,387 \
        --cfg=4.0 --out=grid.png
    python -m argen_jax.pretrained evaluate --workdir=/tmp/var_d16 --num=50000 \
        --ref=VIRTUAL_imagenet256_labeled.npz --inception=pt_inception.npz --out=/tmp/fid

Exit status 0 done, 2 a user error (one line on stderr), 3 an evaluation stopped by
--max_shards before its last shard (run it again to go on).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m argen_jax.pretrained",
                                description="Released LlamaGen / VAR checkpoints as runs.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="released files -> a run directory")
    c.add_argument("--system", required=True, choices=("llamagen", "var"))
    c.add_argument("--gpt", help="LlamaGen c2i GPT (.pt or .npz)")
    c.add_argument("--vq", help="LlamaGen VQ tokenizer (.pt or .npz)")
    c.add_argument("--var", help="VAR transformer (.pth or .npz)")
    c.add_argument("--vae", help="VAR VQVAE (.pth or .npz)")
    c.add_argument("--out", required=True, help="the new run directory")
    c.add_argument("--size", default="", help="LlamaGen size (B, L, XL, XXL, 3B): checked "
                   "against the file; default: recognised from the shapes")
    c.add_argument("--heads", type=int, default=0, help="head count of a custom shape")
    c.add_argument("--image_size", type=int, default=0, help="LlamaGen: the image side the GPT "
                   "was trained at (default: from the file name, c2i_L_384.pt -> 384)")
    c.add_argument("--scan_layers", action="store_true", help="write the scanned layout "
                   "(model.scan_layers: one `blocks` subtree; for fine-tuning with remat)")
    c.add_argument("--patch_nums", type=_ints, default=None,
                   help="VAR: scales if not VAR's 256 / 512 ones (e.g. 1,2,3,4)")
    s = sub.add_parser("sample", help="a grid of chosen classes")
    s.add_argument("--workdir", required=True)
    s.add_argument("--classes", type=_ints, default=(207, 360, 387, 974, 88, 979, 417, 279))
    s.add_argument("--per_class", type=int, default=4, help="rows of the grid")
    s.add_argument("--cfg", type=float, default=None, help="guidance scale (default: preset)")
    s.add_argument("--preset", default="", help="sampling preset (default: the run's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch_size", type=int, default=0)
    s.add_argument("--out", default="", help="grid .png (default: WORKDIR/samples/grid.png)")
    e = sub.add_parser("evaluate", help="the papers' FID-50k protocol")
    e.add_argument("--workdir", required=True)
    e.add_argument("--num", type=int, default=50000, help="samples (class k %% classes)")
    e.add_argument("--out", required=True, help="shards, sample batch and results go here")
    e.add_argument("--ref", default="", help="ADM reference batch (VIRTUAL_imagenet256_"
                   "labeled.npz); without it only the samples are written")
    e.add_argument("--inception", default="", help="Inception weights .npz (experiments/"
                   "evaluation/convert_pt_inception.py)")
    e.add_argument("--preset", default="", help="sampling preset (default: the run's)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--shard_size", type=int, default=1000)
    e.add_argument("--batch_size", type=int, default=0, help="samples per call, all devices "
                   "(0: the run's sample.batch_size)")
    e.add_argument("--feature_batch_size", type=int, default=200)
    e.add_argument("--max_shards", type=int, default=0,
                   help="stop after this many new shards (0: all)")
    e.add_argument("--image_size", type=int, default=-1, help="side the samples are stored "
                   "and scored at (-1: the preset's, LlamaGen 256; 0: the run's own)")
    e.add_argument("--distributed", action="store_true", help="start jax.distributed")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    # imports here, not at the top: --help and a bad argument answer without importing JAX,
    # flax and torch (seconds), and the XLA flag is set before anything can start JAX
    from argen_jax import xla_env

    xla_env.apply()
    from argen_jax.errors import UserError

    try:
        if a.command == "convert":
            from argen_jax.pretrained import convert

            if a.system == "llamagen":
                out = convert.convert_llamagen(a.gpt, a.vq, a.out, a.size, a.heads,
                                               a.image_size, a.scan_layers)
            else:
                out = convert.convert_var(a.var, a.vae, a.out, a.heads, a.patch_nums,
                                          a.scan_layers)
            print(json.dumps(out, default=str))
            return 0
        if a.command == "sample":
            from argen_jax.pretrained.evaluate import sample_grid

            print(sample_grid(os.path.expanduser(a.workdir), a.classes, a.per_class, a.cfg,
                              a.preset, a.seed, a.batch_size, a.out))
            return 0
        if a.distributed:
            from argen_jax.parallel.distributed import initialize

            initialize()
        from argen_jax.pretrained.evaluate import evaluate

        result = evaluate(os.path.expanduser(a.workdir), a.num, a.out, ref=a.ref,
                          inception=a.inception, preset_name=a.preset, seed=a.seed,
                          shard_size=a.shard_size, batch_size=a.batch_size,
                          feature_batch_size=a.feature_batch_size, max_shards=a.max_shards,
                          image_size=a.image_size)
        print(json.dumps(result, default=str))
        return 0 if result["complete"] else 3
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
