"""`SamplingSettings`: the typed `config.sample` section every family and the sampling loop
read (design rule 2), and the draw and CFG scale it selects (`processors.py`'s processors and
CFG, `speculative.py`'s draw)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from argen_jax import config_lib
from argen_jax.errors import ConfigError
from argen_jax.sampling.processors import (
    CFG_SCHEDULES,
    KV_CACHE_DTYPES,
    categorical_draw,
    guidance,
    guided_step_fn,
)
from argen_jax.sampling.speculative import speculative_draw

MAX_GRID_CLASSES = 16  # a model with more classes shows MANY_CLASSES_SHOWN of them
MANY_CLASSES_SHOWN = 8  # spread evenly over the class ids (0, 143, ..., 999 of 1,000)


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """The `config.sample` section, read once by every family (`from_config`) and by the
    loop (how many samples to write, with which seed)."""

    num: int = 16  # samples written by the loop at the end / every train.sample_every steps
    batch_size: int = 0  # samples per jitted call (0: = num); speed only: samples do not
    #   depend on it (sample k uses fold_in(PRNGKey(seed), k))
    seed: int = 0  # sample k uses fold_in(PRNGKey(seed), k)
    temperature: float = 1.0  # logits / temperature; 1.0 samples the model's distribution
    top_k: int = 0  # keep the k most likely tokens; 0: off
    top_p: float = 1.0  # nucleus: the most likely tokens holding probability p; 1.0: off
    cfg_scale: float = 1.0  # classifier-free guidance (conditional models); 1.0: off
    cfg_schedule: str = "constant"  # constant | linear | cosine ramp from 1 to cfg_scale
    #   over the steps (VAR's family default: linear, over its scales)
    cfg_interval: int = -1  # >= 0: guide only steps t <= cfg_interval + 1 (LlamaGen); -1: all
    length: int = 0  # WaveNet: audio samples generated (0: the data's example length)
    kv_cache_dtype: str = ""  # KV-cache storage of the transformer samplers (IGPT, LlamaGen,
    #   VAR): '' the model's compute dtype; 'bfloat16' halves the cache's memory traffic
    #   (keys / values rounded to bf16, attention still in the compute dtype); 'float32'.
    #   Other families have no KV cache; the lossless codec always uses the compute dtype
    pixel_cache: bool = True  # PixelCNN / Gated PixelCNN / PixelCNN++: cached steps (each
    #   layer's input kept, a step computes what the new pixel changes; Ramachandran et al.
    #   2017); False: the full pass per step, the reference (same samples)
    classes: str = ""  # class ids of the written sample grid, comma-separated ("207,360"):
    #   sample k has class classes[k % n], one grid column per class; '': every class when
    #   the model has at most MAX_GRID_CLASSES, else MANY_CLASSES_SHOWN spread over them
    speculative: int = 0  # speculative Jacobi decoding (IGPT, LlamaGen): a window of this
    #   many draft tokens verified per forward pass, accepted by the speculative criterion
    #   (same distribution, fewer sequential passes; sampling/speculative.py); 0: off

    def __post_init__(self):
        try:
            ids = [int(v) for v in self.classes.split(",") if v.strip()]
        except ValueError:
            ids = [-1]
        if min(ids, default=0) < 0:
            raise ConfigError(f"sample.classes must be class ids separated by commas (e.g. "
                              f"'207,360,387'; '': chosen for you), got {self.classes!r}")
        if self.num < 0 or self.batch_size < 0 or self.length < 0:
            raise ConfigError(f"sample.num, sample.batch_size and sample.length must be >= 0, "
                              f"got {self.num}, {self.batch_size}, {self.length}")
        if not self.temperature > 0:
            raise ConfigError(f"sample.temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"sample.top_k must be >= 0 (0: off), got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ConfigError(f"sample.top_p must be in [0, 1] (1: off), got {self.top_p}")
        config_lib.check_choice(self, "cfg_schedule", CFG_SCHEDULES, "sample")
        config_lib.check_choice(self, "kv_cache_dtype", KV_CACHE_DTYPES, "sample")  # '': compute
        if self.speculative < 0:
            raise ConfigError(f"sample.speculative must be >= 0 (a window of draft tokens; "
                              f"0: off), got {self.speculative}")
        if self.cfg_interval < -1:
            raise ConfigError(f"sample.cfg_interval must be >= -1 (-1: every step), got "
                              f"{self.cfg_interval}")

    @classmethod
    def from_config(cls, config, **family_defaults) -> SamplingSettings:
        """`config.sample` (keys it holds) over `family_defaults` (e.g. VAR's
        cfg_schedule='linear') over the class defaults; unknown keys are a ConfigError."""
        section = dict(config.sample.items()) if "sample" in config else {}
        return config_lib.typed(cls, {**family_defaults, **section}, "sample")

    def replace(self, **overrides) -> SamplingSettings:
        """These settings with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)

    def grid_classes(self, num_classes: int) -> tuple[int, ...]:
        """The classes of the written samples' grid (`classes`, or chosen: see its comment);
        () for an unconditional model."""
        if num_classes <= 0:
            return ()
        ids = tuple(int(v) for v in self.classes.split(",") if v.strip())
        if ids:
            if max(ids) >= num_classes:
                raise ConfigError(f"sample.classes={self.classes!r}: the model has "
                                  f"{num_classes} classes (0..{num_classes - 1})")
            return ids
        if num_classes <= MAX_GRID_CLASSES:
            return tuple(range(num_classes))
        return tuple(int(c) for c in np.linspace(0, num_classes - 1, MANY_CLASSES_SHOWN).round())

    @property
    def samples_per_call(self) -> int:
        """The batch of one sampling call: batch_size, or num when it is 0."""
        return self.batch_size or self.num

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0

    def temperature_only(self, what: str) -> float:
        """The temperature, for a likelihood head that draws without logits (a logistic
        mixture): a ConfigError naming any logit filter that is set."""
        for name, off in (("top_k", 0), ("top_p", 1.0)):
            if getattr(self, name) != off:
                raise ConfigError(f"sample.{name}={getattr(self, name)}: {what} has no such "
                                  f"filter (only sample.temperature)")
        return self.temperature

    def no_speculative(self, what: str) -> None:
        """A ConfigError if `speculative` is set, for a family that decodes one step per
        forward pass only."""
        if self.speculative:
            raise ConfigError(f"sample.speculative={self.speculative}: {what} has no "
                              f"speculative decoding (the token decoders igpt and llamagen "
                              f"have): set it to 0")

    @property
    def cache_dtype(self):
        """The KV cache's dtype for `init_cache(batch, dtype)`: None (the model's compute
        dtype) or the jnp dtype `kv_cache_dtype` names."""
        return jnp.dtype(self.kv_cache_dtype) if self.kv_cache_dtype else None

    def draw_fn(self) -> Callable:
        """The sampling loop's draw: temperature, top-k, top-p, then a categorical draw; with
        `speculative`, the draw that verifies a window of drafts (`speculative_draw`)."""
        if self.speculative:
            return speculative_draw(self.temperature, self.top_k, self.top_p)
        return categorical_draw(self.temperature, self.top_k, self.top_p)

    def guidance(self, num_steps: int) -> Callable:
        """The CFG scale as a function of the step t (`processors.guidance`)."""
        return guidance(self.cfg_scale, num_steps, self.cfg_schedule, self.cfg_interval)

    def guide(self, step_fn: Callable, num_steps: int) -> Callable:
        """`guided_step_fn(step_fn, self.guidance(num_steps))`: step_fn runs on the doubled
        batch (conditional rows, then unconditional)."""
        return guided_step_fn(step_fn, self.guidance(num_steps))
