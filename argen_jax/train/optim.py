"""Optax optimizer and learning-rate schedules from `config.train`."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from argen_jax.errors import ConfigError
from argen_jax.models.base import ASSIGNED, FROZEN, ParamGroups
from argen_jax.train.settings import TrainSettings


def make_schedule(cfg: TrainSettings) -> optax.Schedule:
    """'cosine': linear warm-up then cosine decay to lr * end_lr_fraction at num_steps;
    'constant': warm-up then constant; 'linear': warm-up then linear decay."""
    lr, warmup, total = cfg.lr, cfg.warmup_steps, cfg.num_steps
    end = lr * cfg.end_lr_fraction
    kind = cfg.schedule
    warm = optax.linear_schedule(0.0, lr, max(warmup, 1))
    rest = max(total - warmup, 1)
    if kind == "cosine":
        main = optax.cosine_decay_schedule(lr, rest, alpha=end / lr if lr else 0.0)
    elif kind == "constant":
        main = optax.constant_schedule(lr)
    elif kind == "linear":
        main = optax.linear_schedule(lr, end, rest)
    else:
        raise ConfigError(f"train.schedule must be cosine, constant or linear; got {kind!r}")
    if warmup <= 0:
        return main
    return optax.join_schedules([warm, main], [warmup])


def matrices(params):
    """The weight-decay mask of `train.decay='matrices'`: True for parameters of >= 2 dims."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def adamw(cfg: TrainSettings, schedule: optax.Schedule) -> optax.GradientTransformation:
    """AdamW with global-norm gradient clipping (one trained group); weight decay on every
    parameter or on matrices only (`train.decay`), first moment in `train.mu_dtype`."""
    parts = []
    if cfg.grad_clip:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay,
                             mask=matrices if cfg.decay == "matrices" else None,
                             mu_dtype=jnp.dtype(cfg.mu_dtype) if cfg.mu_dtype else None))
    return optax.chain(*parts)


def make_optimizer(cfg: TrainSettings,
                   family) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The one optimizer over `params` from `config.train`: AdamW + clipping, or, for a family
    with parameter groups (`models.base.ParamGroups`), `optax.multi_transform` over them:
    FROZEN -> zero updates, ASSIGNED -> `optax.scale(-1)` (see `assign_surrogate`), every other
    label its own AdamW (own moments and clipping, one shared schedule)."""
    schedule = make_schedule(cfg)
    if not isinstance(family, ParamGroups):
        return adamw(cfg, schedule), schedule

    def transform(label):
        if label == FROZEN:
            return optax.set_to_zero()
        if label == ASSIGNED:
            return optax.scale(-1.0)
        return adamw(cfg, schedule)

    tx = optax.multi_transform({n: transform(n) for n in family.group_names},
                               family.param_groups)
    return tx, schedule
