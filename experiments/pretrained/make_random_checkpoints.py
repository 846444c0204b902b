"""Random-weight files in the released checkpoints' key layouts (.npz numpy state dicts), for
trying `python -m argen_jax.pretrained` without downloading the real files.

    python experiments/pretrained/make_random_checkpoints.py --system=llamagen --size=B \
        --out=/tmp/released      # gpt_B_256.npz (c2i_B_256 shapes), vq_ds16.npz (vq_ds16_c2i)
    python experiments/pretrained/make_random_checkpoints.py --system=var --size=d16 \
        --out=/tmp/released      # var_d16.npz, vae_ch160v4096z32.npz

--size=tiny writes scaled-down shapes (seconds on a CPU) for checking the script.
"""
import argparse
import os

import numpy as np

from argen_jax.models.llamagen import SIZES, ffn_dim
from argen_jax.pretrained import layouts

TINY_VQ = dict(ch=8, ch_mult=(1, 2), nrb=1, z=4, codes=16, dim=4)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--system", required=True, choices=("llamagen", "var"))
    p.add_argument("--size", required=True, help="llamagen: B|L|XL|XXL|3B|tiny; var: d16|d20|"
                   "d24|d30|tiny")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    tiny = a.size == "tiny"
    if a.system == "llamagen":
        if tiny:
            gpt = layouts.llamagen_gpt_shapes(2, 32, 64, vocab=16, classes=3)
            vq = layouts.llamagen_vq_shapes(**TINY_VQ)
        else:
            depth, _, width = SIZES[a.size]
            gpt = layouts.llamagen_gpt_shapes(depth, width, ffn_dim(width))
            vq = layouts.llamagen_vq_shapes()
        side = 16 if tiny else 256  # in the name, as the released files: convert reads it
        names = {f"gpt_{a.size}_{side}.npz": gpt, "vq_ds16.npz" if not tiny else "vq_tiny.npz": vq}
    else:
        if tiny:
            var = layouts.var_shapes(depth=2, width=16, vocab=16, code_dim=4, classes=3,
                                     patch_nums=(1, 2, 3, 4, 6, 8), heads=2)
            vae = layouts.var_vae_shapes(**TINY_VQ)
        else:
            var = layouts.var_shapes(depth=int(a.size.lstrip("d")))
            vae = layouts.var_vae_shapes()
        names = {f"var_{a.size}.npz": var,
                 "vae_ch160v4096z32.npz" if not tiny else "vae_tiny.npz": vae}
    for i, (name, shapes) in enumerate(names.items()):
        path = os.path.join(a.out, name)
        np.savez(path, **layouts.random_state_dict(shapes, a.seed + i))
        n = sum(int(np.prod(s)) for s in shapes.values())
        print(f"wrote {path}: {n / 1e6:.1f}M parameters, {len(shapes)} arrays")


if __name__ == "__main__":
    main()
