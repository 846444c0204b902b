"""Parameter counts of LlamaGen's model sizes in argen_jax next to the paper's figures.

Built with `jax.eval_shape` (nothing is allocated), for ImageNet 256: 16384 codes, 1000
classes (+ the null class of CFG), 16x16 tokens, one class token.

    python -m experiments.llamagen.param_table
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax.models.llamagen import PUBLISHED_PARAMS, SIZES, LlamaGenSettings, ffn_dim  # noqa: E501


def count(size: str) -> int:
    model = LlamaGenSettings(size=size).llamagen_decoder(16384, 1000, (16, 16))
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)))


def main():
    print("| size | layers | heads | width | ffn | ours | LlamaGen | ours / LlamaGen - 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for size, (depth, heads, width) in SIZES.items():
        n, pub = count(size), PUBLISHED_PARAMS[size]
        print(f"| {size} | {depth} | {heads} | {width} | {ffn_dim(width)} | {n:,} | "
              f"{pub / 1e6:,.0f}M | {n / pub - 1:+.2%} |")


if __name__ == "__main__":
    main()
