"""The serving engine: continuous batching over a fixed set of decode slots (JetStream's
design) for the class-prompted token decoders (LlamaGen c2i, Image GPT).

    slots     S rows of work; slot s holds one image being generated: a KV-cache of `rows`
              rows (2 with CFG: conditional, unconditional), its step, key and settings
    insert    a queued image goes into a free slot between decode steps (`_insert`, jitted:
              a fresh cache, the class prompt, prefilled when it has more than one token)
    step      ONE jitted program advances every slot by a token (`_step`): the model's
              `extend` vmapped over slots (each slot its own fill index), the one CFG formula
              (`processors.cfg_combine`, scale from `processors.guidance`), the processors'
              draw with per-slot settings (temperature, top-k, top-p arrays)
    decode    finished token maps go to a thread that decodes them in batches of
              `decode_batch` (the family's `images_of`: the VQ decoder, padded to one shape)
              and encodes PNGs while the slots go on decoding

Randomness is the project's rule 3: image k of a request with seed s uses
`fold_in(PRNGKey(s), k)` and step t of it `fold_in(key, t)`, so an image equals what the
offline sampler (`family.sample`, `--mode=sample`) draws for that seed and settings, whatever
else is in flight. Nothing recompiles per request: settings are arrays of the slot state.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from argen_jax.errors import ConfigError, UserError
from argen_jax.evaluation.images import to_uint8
from argen_jax.layers.attention import KVCache
from argen_jax.models.base import images_of
from argen_jax.models.transformer import Decoder
from argen_jax.sampling.processors import categorical_draw, cfg_combine, guidance

MAX_SEED = 2 ** 31 - 1


class BadRequest(UserError):
    """A request the engine refuses (unknown class, n too large, a setting out of range):
    the server answers 400 with this one-line message."""


class QueueFull(UserError):
    """The bounded queue has no room: the server answers 429 with Retry-After."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class Draining(UserError):
    """The engine is stopping (SIGTERM): it finishes what it holds and takes nothing new."""


@struct.dataclass
class SlotState:
    """Everything the decode step reads, one row per slot (S slots)."""

    cache: Any  # the model's cache, every leaf [S, rows, ...] (fill index [S] / [S, layers])
    last: jax.Array  # [S, rows] int32: the prompt's last token (what step 0 feeds)
    tokens: jax.Array  # [S, N] int32: the image's tokens drawn so far
    step: jax.Array  # [S] int32: the next token to draw (N: done)
    active: jax.Array  # [S] bool: holds an image (idle slots compute but change nothing)
    keys: jax.Array  # [S, 2] uint32: fold_in(PRNGKey(seed), k)
    cfg: jax.Array  # [S] float32 guidance scale
    guided: jax.Array  # [S] bool: cfg != 1 (the offline sampler then runs no second half)
    temperature: jax.Array  # [S] float32
    top_k: jax.Array  # [S] int32 (0: off)
    top_p: jax.Array  # [S] float32 (1: off)


@dataclasses.dataclass(frozen=True)
class Settings:
    """One request's sampling settings (the run's `config.sample` fills what is absent)."""

    cfg_scale: float
    temperature: float
    top_k: int
    top_p: float


SETTING_RANGES = {"cfg_scale": (0.0, 50.0), "temperature": (1e-3, 10.0),
                  "top_p": (1e-6, 1.0)}  # top_k: [0, vocabulary]


class Request:
    """A request for n images of one class. The engine calls `on_event(kind, data)` from its
    threads: ('progress', (k, tokens_done, tokens_total)), ('image', (k, png bytes)),
    ('done', latency seconds), ('cancelled', None). `wait` blocks until done or cancelled."""

    _ids = itertools.count()

    def __init__(self, label: int, n: int, seed: int, settings: Settings,
                 on_event: Callable[[str, Any], None] | None = None):
        self.id = next(self._ids)
        self.label, self.n, self.seed, self.settings = label, n, seed, settings
        self.on_event = on_event
        self.images: list[bytes | None] = [None] * n
        self.arrays: list[np.ndarray | None] = [None] * n
        self.tokens: list[np.ndarray | None] = [None] * n
        self.submitted = time.monotonic()
        self.finished: float | None = None
        self.cancelled = False
        self._done = threading.Event()

    def emit(self, kind: str, data: Any = None) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:  # a listener gone (its event loop closed) stops no engine
                logging.exception("serve: request %d's event listener failed", self.id)

    def cancel(self) -> None:
        """Stop this request: its queued images are dropped and its slots freed before the
        next decode step."""
        if not self._done.is_set():
            self.cancelled = True
            self._done.set()
            self.emit("cancelled")

    @property
    def done(self) -> bool:
        return self._done.is_set() and not self.cancelled

    def wait(self, timeout: float | None = None) -> bool:
        """True once every image is delivered (False: timed out or cancelled)."""
        return self._done.wait(timeout) and not self.cancelled

    def _deliver(self, k: int, tokens, array, png: bytes) -> None:
        if self.cancelled:
            return
        self.tokens[k], self.arrays[k], self.images[k] = tokens, array, png
        self.emit("image", (k, png))
        if all(x is not None for x in self.images):
            self.finished = time.monotonic()
            self._done.set()
            self.emit("done", self.finished - self.submitted)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


class Engine:
    """Continuous batching over `slots` decode slots of a class-prompted decoder family
    (`family.model` a `models.transformer.Decoder`: LlamaGen, Image GPT).

    `submit` queues a request (at most `max_queue` images waiting, `max_images` per
    request); a thread inserts queued images into free slots and runs the decode step while
    any slot is busy; another decodes finished token maps to PNGs. `stop(drain=True)`
    finishes everything queued first."""

    def __init__(self, family, params, slots: int = 8, max_queue: int = 64,
                 max_images: int = 16, decode_batch: int = 0, progress_every: int = 0):
        model = getattr(family, "model", None)
        if not isinstance(model, Decoder) or getattr(model, "block_sizes", None) is not None:
            raise ConfigError(f"{type(family).__name__}: the serving engine runs the "
                              "class-prompted token decoders (llamagen, igpt)")
        if slots < 1 or max_queue < 1 or max_images < 1:
            raise ConfigError("serve: slots, max_queue and max_images must be >= 1")
        self.family, self.model = family, model
        self.params = jax.device_put(params, jax.local_devices()[0])
        self.num_slots, self.max_queue, self.max_images = slots, max_queue, max_images
        self.decode_batch = decode_batch or slots
        self.num_tokens = int(family.num_tokens)
        self.progress_every = progress_every or max(1, self.num_tokens // 32)
        self.conditional = bool(family.conditional)
        self.num_classes = int(family.num_classes)
        self.null_class = int(family.classes.null_class)
        self.rows = 2 if self.conditional else 1
        self.defaults: Any = family.sampling  # SamplingSettings of the run
        if self.defaults.speculative:
            raise ConfigError("serve: sample.speculative is not served (set it to 0)")
        self._guidance = (self.defaults.cfg_schedule, self.defaults.cfg_interval)
        self._cache_dtype = self.defaults.cache_dtype
        self.state = self._empty_state()
        self._step_fn = jax.jit(self._step, donate_argnums=(1,))
        self._insert_fn = jax.jit(self._insert, donate_argnums=(1,))
        # host bookkeeping (under self._lock)
        self._lock = threading.Condition()
        self._pending: collections.deque = collections.deque()  # (request, k)
        self._slot_job: list[tuple[Request, int] | None] = [None] * slots
        self._slot_step = [0] * slots
        self._stopping = False
        self._serve_done = False
        self.failed = ""  # an engine thread's error (the server reports it)
        self._decode_q: collections.deque = collections.deque()
        self._decode_cv = threading.Condition()
        self._inflight_decode = 0
        # statistics (read by /metrics)
        self.tokens_total = 0
        self.images_total = 0
        self.steps_total = 0
        self.cancelled_slots = 0  # slots freed by a cancelled request mid-image
        self.busy_slot_steps = 0  # sum over steps of busy slots: occupancy = / (steps * S)
        self._recent: collections.deque = collections.deque()  # (time, tokens) of last steps
        self._image_seconds = 1.0  # running mean of an image's time in a slot (Retry-After)
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- device programs
    def _fresh_cache(self):
        return self.model.init_cache(self.rows, self._cache_dtype)

    def _empty_state(self) -> SlotState:
        s, n = self.num_slots, self.num_tokens
        cache = jax.tree.map(lambda x: jnp.zeros((s,) + x.shape, x.dtype), self._fresh_cache())
        return SlotState(
            cache=cache, last=jnp.zeros((s, self.rows), jnp.int32),
            tokens=jnp.zeros((s, n), jnp.int32), step=jnp.zeros((s,), jnp.int32),
            active=jnp.zeros((s,), bool), keys=jnp.zeros((s, 2), jnp.uint32),
            cfg=jnp.ones((s,), jnp.float32), guided=jnp.zeros((s,), bool),
            temperature=jnp.ones((s,), jnp.float32), top_k=jnp.zeros((s,), jnp.int32),
            top_p=jnp.ones((s,), jnp.float32))

    def _extend(self, params, ids, cache):
        return self.model.apply({"params": params}, ids, cache, method=Decoder.extend)

    def _insert(self, params, st: SlotState, slot, label, seed, index, cfg, temperature,
                top_k, top_p) -> SlotState:
        """Image `index` of a request into `slot`: a fresh cache (nothing of the slot's last
        image survives), the class prompt of the label (and of the null class for CFG's
        second row) prefilled but for its last token, which step 0 feeds."""
        labels = jnp.stack([label, jnp.int32(self.null_class)])[: self.rows]
        prompt = self.model.class_prompt(labels)  # [rows, P]
        cache = self._fresh_cache()
        if prompt.shape[1] > 1:
            _, cache = self._extend(params, prompt[:, :-1], cache)
        put = lambda full, x: full.at[slot].set(x)  # noqa: E731
        key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
        return st.replace(
            cache=jax.tree.map(put, st.cache, cache), last=put(st.last, prompt[:, -1]),
            tokens=put(st.tokens, jnp.zeros((self.num_tokens,), jnp.int32)),
            step=put(st.step, 0), active=put(st.active, True), keys=put(st.keys, key),
            cfg=put(st.cfg, cfg), guided=put(st.guided, cfg != 1.0),
            temperature=put(st.temperature, temperature), top_k=put(st.top_k, top_k),
            top_p=put(st.top_p, top_p))

    def _step(self, params, st: SlotState) -> SlotState:
        """Every slot by one token: the offline sampler's step (`sampling.tokens`) per slot,
        each at its own step and fill index."""
        n = self.num_tokens
        running = st.active & (st.step < n)
        t = jnp.minimum(st.step, n - 1)
        prev = jnp.take_along_axis(st.tokens, jnp.maximum(st.step - 1, 0)[:, None], axis=1)
        feed = jnp.where((st.step == 0)[:, None], st.last, prev)  # [S, rows]

        def one(ids, cache):  # one slot: [rows] tokens at the slot's own fill index
            logits, cache = self._extend(params, ids[:, None], cache)
            return logits[:, 0].astype(jnp.float32), cache

        out, cache = jax.vmap(one)(feed, st.cache)  # [S, rows, V]
        logits = out[:, 0]
        if self.rows == 2:
            scale = guidance(st.cfg, n, *self._guidance)(t)  # [S]
            logits = jnp.where(st.guided[:, None],
                               cfg_combine(out[:, 0], out[:, 1], scale[:, None]), logits)
        keys_t = jax.vmap(jax.random.fold_in)(st.keys, t)
        x = categorical_draw(st.temperature, st.top_k, st.top_p)(keys_t, logits, t)
        rows = jnp.arange(self.num_slots)
        tokens = st.tokens.at[rows, t].set(
            jnp.where(running, x.astype(jnp.int32), st.tokens[rows, t]))

        def keep_index(new, old):  # idle slots keep their fill index (never runs past)
            if not isinstance(new, KVCache):
                return new
            on = running.reshape(running.shape + (1,) * (new.index.ndim - 1))
            return new.replace(index=jnp.where(on, new.index, old.index))

        cache = jax.tree.map(keep_index, cache, st.cache,
                             is_leaf=lambda c: isinstance(c, KVCache))
        return st.replace(cache=cache, tokens=tokens, step=st.step + running)

    # ---------------------------------------------------------------- requests
    def settings(self, cfg_scale=None, temperature=None, top_k=None, top_p=None) -> Settings:
        """A request's settings, the run's where None; BadRequest when out of range."""
        d = self.defaults
        s = Settings(cfg_scale=float(d.cfg_scale if cfg_scale is None else cfg_scale),
                     temperature=float(d.temperature if temperature is None else temperature),
                     top_k=d.top_k if top_k is None else top_k,
                     top_p=float(d.top_p if top_p is None else top_p))
        for name, (lo, hi) in SETTING_RANGES.items():
            v = getattr(s, name)
            if not (math.isfinite(v) and lo <= v <= hi):
                raise BadRequest(f"{name}={v} is out of range [{lo:g}, {hi:g}]")
        if not isinstance(s.top_k, int) or not 0 <= s.top_k <= self.model.vocab_size:
            raise BadRequest(f"top_k={s.top_k} must be an integer in [0, "
                             f"{self.model.vocab_size}] (0: off)")
        if s.cfg_scale != 1.0 and not self.conditional:
            raise BadRequest(f"cfg_scale={s.cfg_scale}: this model is unconditional (no "
                             "guidance; use 1)")
        return s

    def check(self, label, n, seed) -> None:
        if self.conditional:
            if not isinstance(label, int) or not 0 <= label < self.num_classes:
                raise BadRequest(f"unknown class {label!r}: classes are 0 .. "
                                 f"{self.num_classes - 1}")
        elif label not in (None, 0):
            raise BadRequest(f"class {label!r}: this model is unconditional (omit it)")
        if not isinstance(n, int) or not 1 <= n <= self.max_images:
            raise BadRequest(f"n={n!r} must be an integer in [1, {self.max_images}]")
        if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise BadRequest(f"seed={seed!r} must be an integer in [0, {MAX_SEED}]")

    def submit(self, label: int | None, n: int = 1, seed: int = 0,
               settings: Settings | None = None,
               on_event: Callable[[str, Any], None] | None = None) -> Request:
        """Queues n images of class `label` (None: unconditional models). Raises BadRequest,
        QueueFull or Draining."""
        self.check(label, n, seed)
        req = Request(label if self.conditional else self.null_class, n, seed,
                      settings or self.settings(), on_event)
        with self._lock:
            if self._stopping:
                raise Draining("the server is shutting down: it takes no new requests")
            if len(self._pending) + n > self.max_queue:
                raise QueueFull(f"queue full ({len(self._pending)} images waiting, at most "
                                f"{self.max_queue})", self.retry_after())
            self._pending.extend((req, k) for k in range(n))
            self._lock.notify_all()
        return req

    def generate(self, label: int | None, n: int = 1, seed: int = 0, timeout=None,
                 **settings) -> Request:
        """submit + wait (scripts, tests)."""
        req = self.submit(label, n, seed, self.settings(**settings))
        if not req.wait(timeout):
            raise TimeoutError(f"request {req.id} did not finish in {timeout} s")
        return req

    def retry_after(self) -> float:
        """Seconds until a slot frees up, roughly: the queue over the slots, times an
        image's mean time in a slot."""
        return max(1.0, (len(self._pending) / self.num_slots + 1) * self._image_seconds)

    # ---------------------------------------------------------------- statistics
    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def busy_slots(self) -> int:
        return sum(j is not None for j in self._slot_job)

    def tokens_per_second(self, window: float = 10.0) -> float:
        now = time.monotonic()
        recent = [(t, k) for t, k in list(self._recent) if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return sum(k for _, k in recent[1:]) / max(recent[-1][0] - recent[0][0], 1e-9)

    @property
    def occupancy(self) -> float:
        """Mean fraction of slots busy over the decode steps run so far."""
        return self.busy_slot_steps / max(self.steps_total * self.num_slots, 1)

    # ---------------------------------------------------------------- threads
    def start(self) -> Engine:
        for fn in (self._decode_loop, self._serve_loop):
            th = threading.Thread(target=self._guarded, args=(fn,), name=f"serve{fn.__name__}",
                                  daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stops taking requests; with `drain` finishes every queued and running image first,
        else cancels them. Returns when the threads are done (or `timeout`)."""
        with self._lock:
            self._stopping = True
            if not drain:
                for req, _ in list(self._pending):
                    req.cancel()
                for job in self._slot_job:
                    if job is not None:
                        job[0].cancel()
            self._lock.notify_all()
        with self._decode_cv:
            self._decode_cv.notify_all()
        for th in self._threads:
            th.join(timeout)

    def _guarded(self, fn) -> None:
        """Runs an engine thread; if it fails, the error is kept (`failed`, /healthz) and
        every request is cancelled instead of waiting forever."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 (reported, then every waiter released)
            logging.exception("serve: the engine's %s thread failed", fn.__name__)
            with self._lock:
                self.failed = f"{type(e).__name__}: {e}"
                self._stopping = True
                for req, _ in list(self._pending):
                    req.cancel()
                self._pending.clear()
                for job in self._slot_job:
                    if job is not None:
                        job[0].cancel()
            with self._decode_cv:
                self._serve_done = True
                self._decode_cv.notify_all()

    def _admit(self) -> list[tuple[int, Request, int]]:
        """Under the lock: frees slots of cancelled requests, fills free slots from the
        queue. Returns the new (slot, request, k)."""
        for s, job in enumerate(self._slot_job):
            if job is not None and job[0].cancelled:
                self._slot_job[s] = None
                self.cancelled_slots += 1
        new = []
        for s in range(self.num_slots):
            while self._slot_job[s] is None and self._pending:
                req, k = self._pending.popleft()
                if req.cancelled:
                    continue
                self._slot_job[s] = (req, k)
                self._slot_step[s] = 0
                new.append((s, req, k))
        return new

    def _serve_loop(self) -> None:
        state, params, n = self.state, self.params, self.num_tokens
        started = [0.0] * self.num_slots
        while True:
            with self._lock:
                new = self._admit()
                busy = [s for s, j in enumerate(self._slot_job) if j is not None]
                if not busy:
                    if self._stopping and not self._pending:
                        break
                    self._lock.wait(0.05)
                    continue
            for s, req, k in new:
                st = req.settings
                state = self._insert_fn(params, state, s, req.label, req.seed, k,
                                        st.cfg_scale, st.temperature, st.top_k, st.top_p)
                started[s] = time.monotonic()
            state = self.state = self._step_fn(params, state)
            self.steps_total += 1
            self.busy_slot_steps += len(busy)
            finished = []
            for s in busy:
                self._slot_step[s] += 1
                req, k = self._slot_job[s]
                done = self._slot_step[s]
                if done == n:
                    finished.append(s)
                elif done % self.progress_every == 0 and not req.cancelled:
                    req.emit("progress", (k, done, n))
            if finished:
                tokens = np.asarray(state.tokens)  # waits for this step
                now = time.monotonic()
                with self._lock:
                    for s in finished:
                        job = self._slot_job[s]
                        self._slot_job[s] = None
                        if job is None or job[0].cancelled:
                            continue
                        job[0].emit("progress", (job[1], n, n))
                        self._image_seconds += 0.2 * (now - started[s] - self._image_seconds)
                        with self._decode_cv:
                            self._decode_q.append((job[0], job[1], tokens[s].copy()))
                            self._decode_cv.notify()
            self.tokens_total += len(busy)
            self._recent.append((time.monotonic(), len(busy)))
            while len(self._recent) > 256:
                self._recent.popleft()
        self.state = state
        with self._decode_cv:
            self._serve_done = True
            self._decode_cv.notify_all()

    def _decode_loop(self) -> None:
        while True:
            with self._decode_cv:
                while not self._decode_q:
                    if self._serve_done:
                        return
                    self._decode_cv.wait(0.05)
                batch = [self._decode_q.popleft()
                         for _ in range(min(len(self._decode_q), self.decode_batch))]
            tokens = np.stack([b[2] for b in batch])
            arrays = self.decode(tokens)
            for (req, k, tok), img in zip(batch, arrays, strict=True):
                req._deliver(k, tok, img, png_bytes(img))
                self.images_total += 1

    def decode_sizes(self) -> list[int]:
        """The batch sizes `decode` runs the decoder at: powers of two below decode_batch."""
        return sorted({min(2 ** i, self.decode_batch)
                       for i in range(self.decode_batch.bit_length() + 1)})

    def warmup(self) -> None:
        """Compiles the decoder at every size of `decode_sizes` (before serving: a lone
        finished image then pays no compilation)."""
        for m in self.decode_sizes():
            self.decode(np.zeros((m, self.num_tokens), np.int32))

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Token maps [B, N] -> uint8 images [B, H, W, C], decoded at most `decode_batch` at
        a time, padded to the next of `decode_sizes` (a few compiled shapes)."""
        b = len(tokens)
        m = next(x for x in self.decode_sizes() if x >= min(b, self.decode_batch))
        pad = np.zeros((-b % m, tokens.shape[1]), tokens.dtype)
        samples = np.concatenate([tokens, pad]).reshape(-1, *self.family.spec.shape)
        out = []
        for i in range(0, len(samples), m):
            out.append(to_uint8(*images_of(self.family, samples[i:i + m])))
        return np.concatenate(out)[:b]
