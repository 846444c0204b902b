"""Opening a trained (or converted) run for inference: `open_run(workdir) -> Run`.

A `Run` is what sampling, evaluation with a sampler, the codec and a server need of a run
directory, and nothing more: its config (WORKDIR/config.json, or the one given), its data spec
(data_spec.json), the family built by the registry (with its tokenizer), the parameters
evaluation and sampling use (the Polyak average when the run kept one) restored alone from
the newest checkpoint onto a mesh, and a jitted sampler. No optimizer, no training data, no
loader, no `Experiment`: the parameter shapes and their shardings come from
`jax.eval_shape(family.init)` on a batch of zeros of the spec's shapes.

`Run.sample(num, seed, ...)` draws the samples `Experiment.sample` draws for the same
parameters, seed and indices (the same jitted sampler, shardings and loop:
`sampling/batched.sample_in_batches`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from argen_jax import registry
from argen_jax.config_lib import typed
from argen_jax.data.batch import example_batch
from argen_jax.data.builders import run_spec
from argen_jax.data.pipeline import DataSpec
from argen_jax.io.checkpoint import restore_eval_params
from argen_jax.io.run_dir import load_run_config
from argen_jax.models.base import Family, has_sampler
from argen_jax.parallel import mesh as meshlib
from argen_jax.sampling.batched import sample_in_batches
from argen_jax.sampling.settings import SamplingSettings


@dataclasses.dataclass
class Run:
    """A run opened for inference (`open_run`)."""

    workdir: str
    config: ml_collections.ConfigDict
    spec: DataSpec
    family: Family
    params: Any  # the evaluation parameters (EMA when the run kept them), on `mesh`
    step: int  # the checkpoint's step
    mesh: Mesh
    rules: tuple  # logical-axis rules (config.sharding)
    sample_settings: SamplingSettings  # config.sample, typed once (family.sampling)
    _sampler: Any = dataclasses.field(default=None, repr=False)

    def sample(self, num: int, seed: int, start_index: int = 0,
               batch_size: int | None = None, labels=None) -> np.ndarray:
        """`num` samples; sample k uses the key fold_in(PRNGKey(seed), start_index + k)
        whatever the batch size or device count. Labels default to k % num_classes."""
        if self._sampler is None:
            params_sharding = jax.tree.map(lambda x: x.sharding, self.params)
            batch = meshlib.batch_sharding(self.mesh)
            self._sampler = meshlib.in_mesh(self.mesh, jax.jit(
                meshlib.under_rules(self.rules, self.family.sample),
                in_shardings=(params_sharding, batch, batch), out_shardings=batch))
        return sample_in_batches(self._sampler, self.params, num, seed, self.mesh,
                                 self.spec.num_classes, start_index, batch_size, labels)

    @property
    def has_sampler(self) -> bool:
        return has_sampler(self.family)


def open_run(workdir: str, config: ml_collections.ConfigDict | None = None,
             sample: dict | None = None, mesh: Mesh | None = None,
             use_ema: bool = True) -> Run:
    """The run in `workdir` for inference.

    config: the run's config to use (e.g. the launcher's, with its overrides); None: the
      run's own WORKDIR/config.json (`io.run_dir.load_run_config`).
    sample: overrides of `config.sample` (values converted to the stored keys' types).
    mesh: where the parameters go; None: the config's `mesh` section.
    use_ema: the Polyak-averaged parameters when the run kept them.
    Raises one-line `CheckpointError`s (no checkpoint, another model's) and `ConfigError`s."""
    config = load_run_config(workdir) if config is None else config
    for k, v in (sample or {}).items():
        if v is not None:
            config.sample[k] = type(config.sample[k])(v) if k in config.sample else v
    spec = run_spec(workdir, config)
    family = registry.build_family(config, spec)
    if mesh is None:
        mesh = meshlib.mesh_from_settings(typed(meshlib.MeshSettings, config.get("mesh"),
                                                "mesh"))
    sharding = typed(meshlib.ShardingSettings, config.get("sharding"), "sharding")
    rules = meshlib.rules_from_config(sharding.rules)
    boxed = jax.eval_shape(family.init, jax.random.PRNGKey(0), example_batch(spec))["params"]
    shardings = meshlib.logical_shardings(boxed, mesh, rules)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          nn.unbox(boxed), shardings)
    params, step = restore_eval_params(workdir, config, use_ema, target=target)
    return Run(workdir, config, spec, family, params, step, mesh, rules, family.sampling)
