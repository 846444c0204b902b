"""Optax optimizer and learning-rate schedules from `config.train`."""
from __future__ import annotations

import optax

from argen_jax.errors import ConfigError


def make_schedule(cfg) -> optax.Schedule:
    """'cosine': linear warm-up then cosine decay to lr * end_lr_fraction at num_steps;
    'constant': warm-up then constant; 'linear': warm-up then linear decay."""
    lr, warmup, total = cfg.lr, cfg.get("warmup_steps", 0), cfg.num_steps
    end = lr * cfg.get("end_lr_fraction", 0.0)
    kind = cfg.get("schedule", "cosine")
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


def make_optimizer(cfg) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with global-norm gradient clipping."""
    schedule = make_schedule(cfg)
    parts = []
    if cfg.get("grad_clip", 0.0):
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts.append(
        optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999),
                    eps=cfg.get("eps", 1e-8), weight_decay=cfg.get("weight_decay", 0.0))
    )
    return optax.chain(*parts), schedule
