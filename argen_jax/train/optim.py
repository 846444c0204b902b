"""Optax optimizer and learning-rate schedules from `config.train`."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from argen_jax.errors import ConfigError
from argen_jax.models.base import ASSIGNED, FROZEN, ParamGroups
from argen_jax.train.settings import TrainSettings

LIN0_HOLD = 0.05  # VAR's lin0 (utils/lr_control.py lr_wd_annealing): the peak's share


def lin0_schedule(peak: float, end_fraction: float, steps: int) -> optax.Schedule:
    """VAR's 'lin0' after its warm-up, at step t of `steps` (t = 0 the first step after the
    warm-up, t = steps - 1 the last step of training): with p = t / (steps - 1), the peak while
    p < 0.05, then end + (1 - end) (1 - p) / 0.95 (times peak): lr * end_fraction at the end."""
    span = max(steps - 1, 1)

    def schedule(count):
        p = jnp.asarray(count, jnp.float32) / span
        linear = end_fraction + (1.0 - end_fraction) * (1.0 - p) / (1.0 - LIN0_HOLD)
        return peak * jnp.where(p < LIN0_HOLD, 1.0, linear)

    return schedule


def make_schedule(cfg: TrainSettings) -> optax.Schedule:
    """The learning rate at an optimizer step (0 = the first update): a linear warm-up from
    lr * warmup_start_fraction to lr over warmup_steps, then 'cosine' (to lr * end_lr_fraction
    at num_steps), 'constant', 'linear' (to lr * end_lr_fraction at num_steps) or 'lin0'
    (`lin0_schedule`, VAR's)."""
    lr, warmup, total = cfg.lr, cfg.warmup_steps, cfg.num_steps
    end = lr * cfg.end_lr_fraction
    kind = cfg.schedule
    warm = optax.linear_schedule(lr * cfg.warmup_start_fraction, lr, max(warmup, 1))
    rest = max(total - warmup, 1)
    if kind == "cosine":
        main = optax.cosine_decay_schedule(lr, rest, alpha=end / lr if lr else 0.0)
    elif kind == "constant":
        main = optax.constant_schedule(lr)
    elif kind == "linear":
        main = optax.linear_schedule(lr, end, rest)
    elif kind == "lin0":
        main = lin0_schedule(lr, cfg.end_lr_fraction, rest)
    else:
        raise ConfigError(f"train.schedule must be cosine, constant, linear or lin0; got "
                          f"{kind!r}")
    if warmup <= 0:
        return main
    return optax.join_schedules([warm, main], [warmup])


def param_path(path) -> str:
    """A tree path -> 'var/block_0/attn/query' (the names `train.no_decay` matches)."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def decays(path: str, leaf, decay: str, no_decay: tuple[str, ...]) -> bool:
    """Whether weight decay shrinks the parameter at `path`: not when one of `no_decay` is in
    its path; under decay='matrices' only leaves of >= 2 dims whose name does not end in
    'bias' (VAR's attention biases are [heads, head_dim] here, 1-D in PyTorch)."""
    if any(k in path for k in no_decay):
        return False
    if decay == "matrices":
        return leaf.ndim >= 2 and not path.endswith("bias")
    return True


def decay_mask(cfg: TrainSettings):
    """The weight-decay mask of `train.decay` / `train.no_decay` (a function of the params),
    or None when every parameter decays."""
    no_decay = tuple(k.strip() for k in cfg.no_decay.split(",") if k.strip())
    if cfg.decay == "all" and not no_decay:
        return None

    def mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, p: decays(param_path(path), p, cfg.decay, no_decay), params)

    return mask


def weight_decay_schedule(cfg: TrainSettings) -> optax.Schedule:
    """The weight decay at an optimizer step: constant, or VAR's cosine (utils/lr_control.py)
    from weight_decay at step 0 to weight_decay_end at the last step (num_steps - 1)."""
    wd, end = cfg.weight_decay, cfg.weight_decay_end
    if cfg.weight_decay_schedule == "constant":
        return optax.constant_schedule(wd)
    span = max(cfg.num_steps - 1, 1)

    def schedule(count):
        p = jnp.asarray(count, jnp.float32) / span
        return end + (wd - end) * (0.5 + 0.5 * jnp.cos(jnp.pi * p))

    return schedule


def scheduled_weight_decay(schedule: optax.Schedule, mask) -> optax.GradientTransformation:
    """updates + wd(step) * params on the leaves of `mask` (optax.add_decayed_weights with a
    scheduled coefficient; its state counts the steps)."""

    def init(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params):
        wd = schedule(state.count)
        updates = jax.tree.map(lambda u, p: u + (wd * p).astype(u.dtype), updates, params)
        return updates, optax.ScaleByScheduleState(
            count=optax.safe_int32_increment(state.count))

    tx = optax.GradientTransformation(init, update)
    return optax.masked(tx, mask) if mask is not None else tx


def adamw(cfg: TrainSettings, schedule: optax.Schedule) -> optax.GradientTransformation:
    """AdamW with global-norm gradient clipping (one trained group); weight decay on the
    parameters of `decay_mask` (constant, or scheduled by `train.weight_decay_schedule`),
    first moment in `train.mu_dtype`. Decoupled as PyTorch's AdamW: p -= lr (adam + wd p)."""
    parts = []
    if cfg.grad_clip:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    mu_dtype = jnp.dtype(cfg.mu_dtype) if cfg.mu_dtype else None
    mask = decay_mask(cfg)
    if cfg.weight_decay_schedule == "constant":  # optax.adamw: the state of existing runs
        parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                                 weight_decay=cfg.weight_decay, mask=mask, mu_dtype=mu_dtype))
    else:  # optax.adamw's chain with a scheduled decay
        parts += [optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, mu_dtype=mu_dtype),
                  scheduled_weight_decay(weight_decay_schedule(cfg), mask),
                  optax.scale_by_learning_rate(schedule)]
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
