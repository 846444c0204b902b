"""An experiment built from a config: mesh, data, family, optimizer and the jitted steps.

`train_step(state, batch) -> (state, metrics)` is pure; the model, loss and optimizer are
bound by closure, the step's rng is `fold_in(state.rng, state.step)`, and it is jitted with
explicit in/out shardings over the mesh (the modern `pjit`) and donates the old state.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import linen as nn

from argen_jax import registry
from argen_jax.config_lib import typed
from argen_jax.data.batch import MASK
from argen_jax.data.pipeline import ProcessLocalData
from argen_jax.errors import ConfigError
from argen_jax.evaluation.sample_eval import EvalSettings
from argen_jax.models.base import CountsFlops
from argen_jax.parallel import mesh as meshlib
from argen_jax.sampling.batched import sample_in_batches
from argen_jax.train import optim
from argen_jax.train.mfu import xla_flops
from argen_jax.train.settings import TrainSettings
from argen_jax.train.state import TrainState

REQUIRED_SECTIONS = ("model", "data", "train")


def validate_config(config) -> None:
    for key in REQUIRED_SECTIONS:
        if key not in config:
            raise ConfigError(f"config has no '{key}' section")
    if "name" not in config.model:
        raise ConfigError("config.model.name is required (which model family to build)")


def _rows(batch_size: int) -> tuple[int, int, int]:
    """(first row, end row, batch size) of this process's block of a global batch."""
    per = batch_size // jax.process_count()
    return jax.process_index() * per, (jax.process_index() + 1) * per, batch_size


class Experiment:
    def __init__(self, config, data=None, family=None):
        """data / family: built from the config when None (tools pass stand-ins: the memory
        plan's zero batches of the right shapes, a family with a tokenizer built in memory)."""
        validate_config(config)
        self.config = config
        self.train_settings = typed(TrainSettings, config.train, "train")
        self.eval_settings = typed(EvalSettings, config.get("eval"), "eval")
        self.mesh = meshlib.mesh_from_settings(typed(meshlib.MeshSettings,
                                                     config.get("mesh"), "mesh"))
        sharding = typed(meshlib.ShardingSettings, config.get("sharding"), "sharding")
        self.rules = meshlib.rules_from_config(sharding.rules)
        self.data = registry.build_data(config) if data is None else data
        self.family = registry.build_family(config, self.data.spec) if family is None else family
        self.sample_settings = self.family.sampling  # config.sample, typed once (the family)
        self.tx, self.schedule = optim.make_optimizer(self.train_settings, self.family)
        self.ema_decay = self.train_settings.ema_decay
        self.batch_sharding = meshlib.batch_sharding(self.mesh)
        self.replicated = meshlib.replicated(self.mesh)
        dp = meshlib.data_parallel_size(self.mesh)
        # an image folder builds only this process's rows of each batch (ProcessLocalData);
        # in-memory sources build the global batch and each process keeps its rows
        self._local_data = isinstance(self.data, ProcessLocalData)
        if self._local_data:
            self._train_loader = self.data.train_loader(jax.process_index(), jax.process_count())
            example = self._train_loader(0)
            batch_size = len(example[MASK]) * jax.process_count()
        else:
            example = self.data.train_batch(0)
            batch_size = len(example[MASK])
        sizes = {"batch_size": batch_size, "eval_batch_size": self.data.eval_batch_size}
        for key, bs in sizes.items():
            if bs % dp:
                raise ConfigError(f"data.{key}={bs} is not divisible by the {dp}-way data "
                                  f"parallel mesh (mesh={dict(self.mesh.shape)})")
        if self._local_data:
            self._check_local_rows(batch_size)
            self._check_local_rows(self.data.eval_batch_size)
            example = {k: np.concatenate([v] * jax.process_count()) for k, v in example.items()}
            if jax.process_count() > 1:
                logging.info("data: process %d of %d reads rows [%d, %d) of each batch of %d",
                             jax.process_index(), jax.process_count(), *_rows(batch_size))
        abstract = jax.eval_shape(self._create_boxed, jax.random.PRNGKey(0), example)
        self.state_sharding = meshlib.logical_shardings(abstract, self.mesh, self.rules)
        unboxed = nn.unbox(abstract)
        self.abstract_state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            unboxed, self.state_sharding)
        self._example = example
        self.global_batch_size = batch_size
        self.train_step = meshlib.in_mesh(self.mesh, jax.jit(
            meshlib.under_rules(self.rules, self._train_step),
            in_shardings=(self.state_sharding, self.batch_sharding),
            out_shardings=(self.state_sharding, self.replicated),
            donate_argnums=0,
        ))
        self.eval_step = meshlib.in_mesh(self.mesh, jax.jit(
            meshlib.under_rules(self.rules, self._eval_step),
            in_shardings=(self.state_sharding.params, self.batch_sharding),
            out_shardings=self.replicated,
        ))
        self._finite = None  # state_is_finite's jitted reduction, built on first use
        self._sample = meshlib.in_mesh(self.mesh, jax.jit(
            meshlib.under_rules(self.rules, self.family.sample),
            in_shardings=(self.state_sharding.params, self.batch_sharding, self.batch_sharding),
            out_shardings=self.batch_sharding,
        ))

    # ------------------------------------------------------------------ state
    def _create_boxed(self, rng, batch):
        init_rng, state_rng = jax.random.split(rng)
        variables = self.family.init(init_rng, batch)
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.tx.init(params), ema_params=params, rng=state_rng)

    def init_state(self) -> TrainState:
        rng = jax.random.PRNGKey(self.config.seed)
        batch = self.device_batch(self._example)
        create = jax.jit(lambda r, b: nn.unbox(self._create_boxed(r, b)),
                         out_shardings=self.state_sharding)
        return create(rng, batch)

    def abstract_batch(self) -> dict:
        """The training batch as `jax.ShapeDtypeStruct`s with the batch sharding."""
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype,
                                                           sharding=self.batch_sharding),
                            self._example)

    def lower_train_step(self):
        """The train step lowered for the abstract state and batch (shapes and shardings
        only: nothing is allocated): `.compile()` it for `memory_analysis()` (per-device
        bytes) and `cost_analysis()` (FLOPs), e.g. experiments/benchmarks/memory/memory_plan.py."""
        with jax.set_mesh(self.mesh):
            return self.train_step.jitted.lower(self.abstract_state, self.abstract_batch())

    def num_params(self) -> int:
        return int(sum(math.prod(x.shape) for x in jax.tree.leaves(self.abstract_state.params)))

    def flops_per_step(self) -> tuple[float, int | None]:
        """(model FLOPs of one training step over the global batch, tokens per example or
        None): the family's analytic count (`models.base.CountsFlops`), else XLA's count of
        the lowered step (before partitioning: the whole batch; no compilation)."""
        if isinstance(self.family, CountsFlops):
            return (self.family.train_flops_per_example() * self.global_batch_size,
                    self.family.tokens_per_example())
        return xla_flops(self.lower_train_step()), None

    # ------------------------------------------------------------------ data
    def _check_local_rows(self, batch_size: int) -> None:
        """A process-local loader reads rows [p * B / P, (p + 1) * B / P): they must be the rows
        the batch sharding puts on this process's devices."""
        start, stop, _ = _rows(batch_size)
        rows = meshlib.process_rows(self.batch_sharding, batch_size)
        if (rows.start, rows.stop) != (start, stop):
            raise ConfigError(f"the mesh gives process {jax.process_index()} of "
                              f"{jax.process_count()} batch rows [{rows.start}, {rows.stop}), "
                              f"not [{start}, {stop}): order the mesh's devices by process "
                              "(jax.make_mesh does)")

    def device_batch(self, batch: dict, local: bool = False) -> dict:
        """Numpy batch -> global jax.Arrays sharded over data. `batch` is the global batch
        (each process keeps the rows its devices hold) or, with local=True, this process's
        rows only (from a `ProcessLocalData` loader)."""
        n = jax.process_count()

        def put(x):
            x = np.asarray(x)
            if local:
                shape = (x.shape[0] * n, *x.shape[1:])
            else:
                shape, x = x.shape, x[meshlib.process_rows(self.batch_sharding, x.shape[0])]
            return jax.make_array_from_process_local_data(self.batch_sharding, x, shape)

        return jax.tree.map(put, batch)

    def train_batch(self, step: int) -> dict:
        """The training batch of `step` on the devices (a pure function of (seed, step))."""
        if self._local_data:
            return self.device_batch(self._train_loader(step), local=True)
        return self.device_batch(self.data.train_batch(step))

    def close(self) -> None:
        """Stop input workers (a loader with worker processes holds them until closed)."""
        for obj in (getattr(self, "_train_loader", None), self.data):
            if hasattr(obj, "close"):
                obj.close()

    def eval_batches(self) -> Iterator[dict]:
        """Every evaluation batch once, in order, on the devices."""
        if self._local_data:
            for b in self.data.eval_loader(jax.process_index(), jax.process_count()):
                yield self.device_batch(b, local=True)
        else:
            for b in self.data.eval_batches():
                yield self.device_batch(b)

    # ------------------------------------------------------------------ steps
    def _train_step(self, state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            return self.family.loss(params, batch, rng, True, state.step)

        (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = self.update_ema(state.ema_params, params, state.step)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "lr": self.schedule(state.step), **sums}
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema)
        return new, metrics

    def update_ema(self, ema, params, step):
        """Polyak average with warm-up: decay_t = min(decay, (1 + t) / (10 + t)), so the
        average forgets the initialisation quickly instead of keeping decay^t of it."""
        if self.ema_decay <= 0:
            return params
        t = step.astype(jnp.float32)
        d = jnp.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)

    def _eval_step(self, params, batch):
        _, sums = self.family.loss(params, batch, jax.random.PRNGKey(0), False)
        return sums

    def state_is_finite(self, state: TrainState) -> bool:
        """Whether every parameter (and its average) is finite: checked before each save."""
        if self._finite is None:
            self._finite = meshlib.in_mesh(self.mesh, jax.jit(lambda p, e: jnp.all(jnp.stack(
                [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((p, e))]))))
        return bool(jax.device_get(self._finite(state.params, state.ema_params)))

    def eval_params(self, state: TrainState):
        return state.ema_params if self.ema_decay > 0 else state.params

    # ------------------------------------------------------------------ sampling
    def sample(self, params, num: int, seed: int, start_index: int = 0,
               batch_size: int | None = None, labels=None) -> np.ndarray:
        """`num` samples; sample k always uses the key fold_in(PRNGKey(seed), start_index + k)
        whatever the batch size or device count. Labels default to k % num_classes."""
        return sample_in_batches(self._sample, params, num, seed, self.mesh,
                                 self.data.spec.num_classes, start_index, batch_size, labels)
