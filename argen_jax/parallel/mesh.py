"""Mesh construction and logical -> mesh sharding."""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from argen_jax.errors import ConfigError
from argen_jax.parallel import axes, distributed


@dataclasses.dataclass(frozen=True)
class MeshSettings:
    """The `config.mesh` section."""

    data: int = -1  # data-parallel shards; -1: every device not used by the other axes
    model: int = 1  # tensor parallelism (heads, kv_heads, mlp); 1 = none
    fsdp: int = 1  # parameter sharding (ZeRO-3 style); 1 = none
    num_devices: int = 0  # 0: every device; N: only the first N

    def __post_init__(self):
        for name in ("model", "fsdp"):
            if getattr(self, name) < 1:
                raise ConfigError(f"mesh.{name} must be >= 1, got {getattr(self, name)}")
        if self.data < 1 and self.data != -1:
            raise ConfigError(f"mesh.data must be >= 1 or -1 (all the rest), got {self.data}")
        if self.num_devices < 0:
            raise ConfigError(f"mesh.num_devices must be >= 0, got {self.num_devices}")


@dataclasses.dataclass(frozen=True)
class ShardingSettings:
    """The `config.sharding` section."""

    # logical axis -> mesh axis pairs (argen_jax/parallel/axes.py); None: axes.DEFAULT_RULES
    rules: Any = None


def mesh_from_settings(m: MeshSettings) -> Mesh:
    try:
        return create_mesh(data=m.data, model=m.model, fsdp=m.fsdp, num_devices=m.num_devices)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def create_mesh(data: int = -1, model: int = 1, fsdp: int = 1, devices=None,
                num_devices: int = 0) -> Mesh:
    """A ('data', 'fsdp', 'model') mesh; `-1` for `data` takes every device left over.
    `num_devices` > 0 uses only the first that many devices."""
    devices = list(devices if devices is not None else jax.devices())
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(f"mesh: num_devices={num_devices} but only {len(devices)} exist")
        devices = devices[:num_devices]
    n = len(devices)
    if data == -1:
        if n % (model * fsdp):
            raise ValueError(
                f"mesh: {n} devices do not divide into model={model} x fsdp={fsdp} shards"
            )
        data = n // (model * fsdp)
    if data * model * fsdp != n:
        raise ValueError(
            f"mesh: data={data} x fsdp={fsdp} x model={model} = {data * model * fsdp} "
            f"does not match the {n} available devices"
        )
    grid = np.asarray(devices).reshape(data, fsdp, model)
    return Mesh(grid, (axes.DATA_AXIS, axes.FSDP_AXIS, axes.MODEL_AXIS))


def rules_from_config(rules: Sequence | None):
    """Config rules (list of [logical, mesh-axis-or-list-or-None]) -> tuple of pairs."""
    if rules is None:
        return axes.DEFAULT_RULES
    out = []
    for logical, mesh_axes in rules:
        out.append((logical, tuple(mesh_axes) if isinstance(mesh_axes, list) else mesh_axes))
    return tuple(out)


def logical_shardings(abstract_tree, mesh: Mesh, rules):
    """NamedShardings for a tree whose leaves may carry logical-axis boxes."""
    specs = nn.get_partition_spec(abstract_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over data x fsdp; the rest replicated."""
    return NamedSharding(mesh, PartitionSpec((axes.DATA_AXIS, axes.FSDP_AXIS)))


@functools.lru_cache(maxsize=64)  # called for every array of every batch: compute once
def process_rows(sharding: NamedSharding, num_rows: int) -> slice:
    """The rows of a [num_rows, ...] array sharded by `sharding` that this process's devices
    hold: one contiguous block (what `jax.make_array_from_process_local_data` fills)."""
    idx = sharding.addressable_devices_indices_map((num_rows,)).values()
    starts = [i[0].start or 0 for i in idx]
    stops = [num_rows if i[0].stop is None else i[0].stop for i in idx]
    rows = slice(min(starts), max(stops))
    blocks = sorted(set(zip(starts, stops, strict=True)))
    if sum(b - a for a, b in blocks) != rows.stop - rows.start:
        raise ValueError(f"this process's batch rows are not one block: {blocks}")
    return rows


def to_host(x) -> np.ndarray:
    """A jax.Array's whole value as numpy on every process: `device_get` where this process
    holds all of it, else gathered over the processes (a batch-sharded output of a multi-
    process mesh, which `device_get` refuses)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape[axes.DATA_AXIS] * mesh.shape[axes.FSDP_AXIS]


def under_rules(rules, fn):
    """`fn` traced under the logical-axis `rules`, so the activation annotations of the
    modules (`nn.with_logical_constraint`) become sharding constraints (design rule 14)."""

    def wrapped(*args):
        with nn.logical_axis_rules(rules):
            return fn(*args)

    return wrapped


def in_mesh(mesh: Mesh, jitted):
    """Calls a jitted function with `mesh` set (needed by the activation constraints;
    `jax.set_mesh` cannot be entered inside `jit`). `.jitted` is the jitted function."""
    compiled = []

    def call(*args):
        with jax.set_mesh(mesh):
            if jax.process_count() > 1 and not compiled:
                # compile everywhere first: processes that finish compiling at different
                # times would time out in the step's first cross-process collective
                jitted.lower(*args).compile()
                distributed.barrier("compiled")
                compiled.append(True)
            return jitted(*args)

    call.jitted = jitted
    return call
