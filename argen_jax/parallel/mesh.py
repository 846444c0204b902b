"""Mesh construction and logical -> mesh sharding."""
from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from argen_jax.parallel import axes


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


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape[axes.DATA_AXIS] * mesh.shape[axes.FSDP_AXIS]
