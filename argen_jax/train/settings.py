"""The `config.train` section: optimisation, schedule, and the loop's cadence."""
from __future__ import annotations

import dataclasses

from argen_jax.config_lib import check_choice
from argen_jax.errors import ConfigError

SCHEDULES = ("cosine", "constant", "linear", "lin0")
DECAY = ("all", "matrices")
WEIGHT_DECAY_SCHEDULES = ("constant", "cosine")
MU_DTYPES = ("", "bfloat16", "float32")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    num_steps: int  # optimizer steps of the whole run (resuming continues up to it)
    lr: float  # peak learning rate (AdamW)
    schedule: str = "cosine"  # after the linear warm-up: cosine | constant | linear (to
    #   lr * end_lr_fraction at num_steps) | lin0 (VAR's: the peak for 5% of the steps after
    #   the warm-up, then linear to lr * end_lr_fraction at the last step, num_steps - 1)
    warmup_steps: int = 0  # linear warm-up from lr * warmup_start_fraction to lr
    warmup_start_fraction: float = 0.0  # lr at step 0 / lr (VAR's wp0: 0.005)
    end_lr_fraction: float = 0.0  # final lr = lr * this (cosine, linear, lin0; VAR's wpe)
    b1: float = 0.9  # AdamW first-moment decay
    b2: float = 0.999  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.0  # AdamW decoupled weight decay (at step 0)
    weight_decay_schedule: str = "constant"  # 'constant' | 'cosine': half a cosine from
    #   weight_decay at step 0 to weight_decay_end at the last step (VAR's twd -> twde)
    weight_decay_end: float = 0.0  # the final weight decay of the 'cosine' schedule
    decay: str = "all"  # which parameters weight decay shrinks: 'all' | 'matrices' (>= 2-D
    #   leaves not named *bias: kernels and embedding tables, not biases, norm scales or
    #   gains; LlamaGen's creat_optimizer, VAR's filter_params)
    no_decay: str = ""  # comma-separated name fragments: a parameter whose path
    #   ('var/block_0/attn/query') holds one is not decayed either (VAR's nowd_keys)
    mu_dtype: str = ""  # AdamW first-moment dtype ('bfloat16' halves its memory; '': params')
    grad_clip: float = 0.0  # global-norm gradient clipping (0 = off)
    ema_decay: float = 0.0  # Polyak averaging of the weights for eval/sampling (0 = off)
    log_every: int = 50  # train metrics every N steps (and at the end)
    eval_every: int = 0  # test-set NLL every N steps (0: only at the end)
    sample_every: int = 0  # a sample grid every N steps (0: only at the end)
    sample_at_end: bool = True  # samples after the last step (families with a sampler)
    save_every: int = 500  # checkpoint every N steps (and at the end / on SIGTERM)
    max_to_keep: int = 3  # newest checkpoints kept (besides the best one, see keep_best)
    keep_best: str = "auto"  # also keep the checkpoint with the lowest value of this eval
    # metric ('auto': eval/bpd, else eval/nll, else eval/mse; 'none': only the newest)
    blowup_factor: float = 10.0  # divergence: a logged loss this many times its running
    # median's size above that median (0 = off) ...
    blowup_patience: int = 3  # ... for this many log rows in a row
    peak_tflops: float = 0.0  # bf16 peak TFLOP/s of one device for train/mfu (0: by device
    #   kind, train/mfu.py's table; unknown kinds, e.g. CPU, log no MFU)
    tensorboard: bool = True  # TensorBoard event files under WORKDIR/tb
    quiet: bool = False  # no progress bar

    def __post_init__(self):
        if self.num_steps <= 0:
            raise ConfigError(f"train.num_steps must be positive, got {self.num_steps}")
        if self.lr < 0:
            raise ConfigError(f"train.lr must be >= 0, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule must be one of {SCHEDULES}, got "
                              f"{self.schedule!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.max_to_keep < 1:
            raise ConfigError(f"train.max_to_keep must be >= 1 (it is how many checkpoints "
                              f"are kept), got {self.max_to_keep}")
        if self.blowup_patience < 1:
            raise ConfigError(f"train.blowup_patience must be >= 1, got {self.blowup_patience}")
        check_choice(self, "decay", DECAY, "train")
        check_choice(self, "mu_dtype", MU_DTYPES, "train")
        check_choice(self, "weight_decay_schedule", WEIGHT_DECAY_SCHEDULES, "train")
        if not 0.0 <= self.warmup_start_fraction <= 1.0:
            raise ConfigError(f"train.warmup_start_fraction must be in [0, 1], got "
                              f"{self.warmup_start_fraction}")
        if self.schedule == "lin0" and self.num_steps <= self.warmup_steps + 1:
            raise ConfigError(f"train.schedule='lin0' needs num_steps > warmup_steps + 1, got "
                              f"{self.num_steps} and {self.warmup_steps}")
        if not self.keep_best:
            raise ConfigError("train.keep_best is empty: an eval metric name, 'auto' or 'none'")
        for name in ("blowup_factor", "warmup_steps", "log_every", "eval_every",
                     "sample_every", "save_every", "grad_clip", "weight_decay", "weight_decay_end",
                     "end_lr_fraction", "peak_tflops"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
