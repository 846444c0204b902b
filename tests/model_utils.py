"""Test helpers: parameters without compiling an init.

`jax.jit(model.init)` compiles one random-number kernel per parameter, which dominates the
time of small model tests on CPU. `random_params` traces `init` abstractly (no compilation)
and fills the shapes with numpy normals instead.
"""
import jax
import numpy as np
from flax import linen as nn


def random_params(model: nn.Module, *args, seed: int = 0, scale: float = 0.3, **kwargs):
    """{'params': ...} of `model` with N(0, scale^2) entries (plus zero perturbations)."""
    abstract = nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), *args, **kwargs))
    rng = np.random.default_rng(seed)

    def fill(path, s):
        if any(getattr(k, "key", None) == "perturbations" for k in path):
            return np.zeros(s.shape, s.dtype)
        return (rng.normal(size=s.shape) * scale).astype(s.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)
