"""Write a synthetic ImageNet-layout folder of JPEGs, offline, for tests and benchmarks.

    python -m experiments.data.make_image_folder --out=/tmp/synth_imagenet --classes=10 \
        --per_class=2000 [--val_per_class=50] [--seed=0] [--min_side=200] [--max_side=500]

writes out/train/<class>/*.JPEG (and out/val/<class>/*.JPEG): every image a random window of
a real photo that ships inside an installed package (skimage.data, scikit-learn's sample
images, matplotlib's grace_hopper; class c uses photo c mod 11), resized to a random size
(each side in [min_side, max_side]) and flipped with probability 0.5. The same --seed writes
the same bytes. Library function: `argen_jax.data.synthetic.make_synthetic_folder`.
"""
from __future__ import annotations

import argparse
import sys
import time

from argen_jax.data.synthetic import make_synthetic_folder
from argen_jax.errors import UserError


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write (train/ and val/ inside)")
    p.add_argument("--classes", type=int, required=True, help="number of class folders")
    p.add_argument("--per_class", type=int, required=True, help="training images per class")
    p.add_argument("--val_per_class", type=int, default=0, help="validation images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min_side", type=int, default=200, help="smallest image side (px)")
    p.add_argument("--max_side", type=int, default=500, help="largest image side (px)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    args = p.parse_args(argv)
    t = time.time()
    try:
        counts = make_synthetic_folder(args.out, args.classes, args.per_class,
                                       args.val_per_class, seed=args.seed,
                                       min_side=args.min_side, max_side=args.max_side,
                                       quality=args.quality, progress=True)
    except UserError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {counts['train']} train and {counts['val']} val images to {args.out} "
          f"in {time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
