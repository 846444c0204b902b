"""Repeated blocks: rematerialisation, scanning over depth, and the two parameter layouts.

A model with `depth` identical blocks builds them in one of two layouts:

    unrolled   submodules `block_0` .. `block_{depth-1}` (Python loop; compile time grows with
               depth); every checkpoint and PyTorch converter speaks this layout
    scanned    one submodule `blocks` run by `nn.scan`: each parameter gets a leading
               [depth] axis named `axes.LAYERS` (never sharded) and the KV cache is one
               `KVCache` with the same leading axis; the program holds one block

`stack_layers` / `unstack_layers` convert a parameter tree between the two (the converters
write the unrolled layout; a scanned config stacks it). `remat_block` wraps a block class in
`nn.remat` with the policy a config names (`model.remat`): 'none', 'full' (save only the
block's inputs) or a `jax.checkpoint_policies` name (e.g. 'dots_saveable': keep matmul
outputs, recompute the elementwise rest).
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
from flax import linen as nn

from argen_jax.errors import ConfigError
from argen_jax.parallel import axes

# named policies of jax.checkpoint_policies that take no arguments
REMAT_POLICIES = ("dots_saveable", "dots_with_no_batch_dims_saveable", "nothing_saveable",
                  "everything_saveable", "checkpoint_dots",
                  "checkpoint_dots_with_no_batch_dims")
REMAT_CHOICES = ("none", "full", *REMAT_POLICIES)
BLOCK_PREFIX = "block_"  # unrolled layout: block_0, block_1, ...
SCANNED_NAME = "blocks"  # scanned layout: one submodule with a leading layer axis


def check_remat(value: str, key: str = "model.remat") -> None:
    """A one-line ConfigError unless `value` is 'none', 'full' or a known policy name."""
    if value not in REMAT_CHOICES:
        raise ConfigError(f"{key}={value!r} is not one of {REMAT_CHOICES}")


def remat_block(cls: type[nn.Module], remat: str, static_argnums: tuple[int, ...] = ()):
    """`cls` itself for remat='none', else `nn.remat(cls, policy=...)`. static_argnums index
    the call's arguments with the module as 0 (Python flags such as `train`)."""
    check_remat(remat)
    if remat == "none":
        return cls
    policy = None if remat == "full" else getattr(jax.checkpoint_policies, remat)
    return nn.remat(cls, policy=policy, static_argnums=static_argnums)


def repeated_block(cls: type[nn.Module], *, remat: str, scan: bool, depth: int,
                   in_axes: tuple, static_argnums: tuple[int, ...] = ()):
    """The block class a model instantiates: rematerialised per `remat` and, with `scan`,
    `nn.scan`ned `depth` times over its first argument (the carry, the residual stream) with
    `in_axes` for the others (`nn.broadcast` or 0: stacked over layers, e.g. the KV cache).
    The scanned block returns (carry, stacked second outputs)."""
    block = remat_block(cls, remat, static_argnums)
    if not scan:
        return block
    return nn.scan(block, variable_axes={"params": 0},
                   split_rngs={"params": True, "dropout": True}, in_axes=in_axes,
                   length=depth, metadata_params={nn.PARTITION_NAME: axes.LAYERS})


def stack_layers(params: dict, name: str = SCANNED_NAME, prefix: str = BLOCK_PREFIX) -> dict:
    """Unrolled -> scanned: {prefix0: t0, prefix1: t1, ...} -> {name: stack(t0, t1, ...)}
    (leaves gain a leading layer axis) at whatever level of `params` the blocks sit. A tree
    without such keys is returned as is; the blocks' leaves come out unboxed (plain arrays:
    the layout of checkpoints and converters)."""
    if not isinstance(params, dict):
        return params
    pat = re.compile(re.escape(prefix) + r"(\d+)$")
    idx = {int(m.group(1)): k for k in params if (m := pat.match(k))}
    out = {k: stack_layers(v, name, prefix) for k, v in params.items()
           if not pat.match(k)}
    if idx:
        if sorted(idx) != list(range(len(idx))):
            raise ValueError(f"layers {sorted(idx)} are not 0 .. {len(idx) - 1}")
        if name in out:
            raise ValueError(f"params hold both {name!r} and {prefix}<i> blocks")
        layers = [nn.unbox(params[idx[i]]) for i in range(len(idx))]
        out[name] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    return out


def unstack_layers(params: dict, name: str = SCANNED_NAME, prefix: str = BLOCK_PREFIX) -> dict:
    """Scanned -> unrolled: the inverse of `stack_layers`."""
    if not isinstance(params, dict):
        return params
    out = {k: unstack_layers(v, name, prefix) for k, v in params.items() if k != name}
    if name in params:
        tree = nn.unbox(params[name])
        depth = jax.tree.leaves(tree)[0].shape[0]
        for i in range(depth):
            out[f"{prefix}{i}"] = jax.tree.map(lambda x, i=i: x[i], tree)
    return out
