"""WaveNet (van den Oord et al. 2016): dilated causal convolutions over mu-law audio.

    x codes [B, T] -> one-hot, shifted right one step (y_t = onehot(x_{t-1}), y_0 = 0)
      -> causal input conv (kernel `in_kernel`)                           residual [B, T, R]
      -> for each dilation d (1, 2, ..., 512 repeated):
             h = CausalConv1D(2D, kernel, d)(res) + V_g g + V_l c_t       gate input [B, T, 2D]
             z = tanh(h_a) * sigmoid(h_b)                                 [B, T, D]
             skip += 1x1(z);   res += 1x1(z)
      -> ReLU -> 1x1 -> ReLU -> 1x1                                       head outputs [B, T, P]

Output t is a distribution over x_t given x_{<t} only: the shift makes the first conv see
x_{t-1} at most and every conv is causal. The receptive field is
(in_kernel - 1) + (kernel - 1) * sum(dilations) + 1 samples of y, i.e. x_{t-RF}, ..., x_{t-1}.

Conditioning, added to every gate: global = a speaker-id embedding g (one vector per
sequence); local = a lower-rate feature sequence (log-mel frames, `hop` samples each) passed
through a non-causal conv over frames and upsampled to the sample rate by a learned
transposed conv (stride = kernel = hop) or by repetition.

Output heads are pluggable (`heads/codes.HEADS`): the 256-way softmax over mu-law codes or
the discretised logistic mixture of PixelCNN++, through one interface.

Generation is `sampling.loop.autoregressive_scan` in two ways:
  * fast: the cache is every layer's queue of past inputs (`CausalConv1D` step form), one
    sample costs O(layers) whatever the receptive field (Paine et al. 2016);
  * naive: no cache; every step re-runs the full network on the last RF inputs (with the
    positions before t = 0 masked out exactly as the full pass pads them). It is the
    reference for tests and benchmarks: both give the same logits at every step.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax import config_lib
from argen_jax.config_lib import typed
from argen_jax.data import audio
from argen_jax.data.batch import AUDIO, LABEL, MASK, MEL, VALID
from argen_jax.errors import ConfigError, DataError
from argen_jax.heads import logistic_mixture, mulaw
from argen_jax.heads.codes import HEADS, CategoricalHead
from argen_jax.layers.causal_conv import CausalConv1D, receptive_field, zero_queue
from argen_jax.models.base import CodingSymbols, Family, categorical_symbols
from argen_jax.parallel import axes
from argen_jax.sampling.loop import Steps

UPSAMPLE = ("transposed", "repeat")  # local conditioning: frames -> samples


def stack_dilations(max_dilation: int = 512, repeats: int = 1) -> tuple[int, ...]:
    """(1, 2, 4, ..., max_dilation) repeated `repeats` times."""
    if max_dilation < 1 or max_dilation & (max_dilation - 1):
        raise ConfigError(f"model.max_dilation={max_dilation} must be a power of two")
    one = tuple(2**i for i in range(int(np.log2(max_dilation)) + 1))
    return one * repeats


def _dense(features: int, name: str, use_bias: bool = True, dtype=jnp.float32):
    return nn.Dense(
        features, use_bias=use_bias, dtype=dtype, name=name,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                 (axes.CONV_IN, axes.CONV_OUT)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes.CONV_OUT,)))


# --------------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class WaveNetSettings:
    """`config.model` of wavenet. Sizes that had no default before are the paper-sized
    model's (experiments/wavenet/paper.py); the others keep their earlier defaults."""

    head: str = "softmax"  # output head: 'softmax' (256 mu-law codes) | 'logistic_mixture'
    num_mixtures: int = 10  # components of the 'logistic_mixture' head (PixelCNN++'s)
    residual_channels: int = 64  # width of the residual stream
    dilation_channels: int = 64  # width of each half of the gate
    skip_channels: int = 256  # width of the skip sum
    out_hidden: int = 256  # hidden width of the ReLU-1x1-ReLU-1x1 output
    kernel_size: int = 2  # taps of every dilated conv
    in_kernel: int = 2  # taps of the causal input conv
    max_dilation: int = 512  # dilations 1, 2, ..., max_dilation (a power of two) ...
    repeats: int = 3  # ... repeated this many times
    global_conditioning: bool = False  # speaker embedding on every gate (if the data has ids)
    speaker_dim: int = 16  # speaker embedding width
    local_conditioning: bool = False  # upsampled log-mel frames on every gate
    cond_channels: int = 32  # width of the upsampled local conditioning
    cond_kernel: int = 3  # frames seen by the (non-causal) conv over the features
    upsample: str = "transposed"  # 'transposed' (learned, stride = hop) or 'repeat'
    dtype: str = "float32"  # compute dtype; 'bfloat16' for mixed precision (params f32)

    def __post_init__(self):
        if self.head not in HEADS:
            raise ConfigError(f"model.head={self.head!r} unknown; known: {sorted(HEADS)}")
        config_lib.check_positive(self, "num_mixtures", "residual_channels", "dilation_channels",
                                  "skip_channels", "out_hidden", "kernel_size", "in_kernel",
                                  "repeats", "speaker_dim", "cond_channels", "cond_kernel")
        stack_dilations(self.max_dilation, self.repeats)  # a power of two
        config_lib.check_choice(self, "upsample", UPSAMPLE)
        config_lib.check_choice(self, "dtype", config_lib.COMPUTE_DTYPES)

    def make_head(self, levels: int):
        kw = {"num_mixtures": self.num_mixtures} if self.head == "logistic_mixture" else {}
        return HEADS[self.head](levels, **kw)

    def network_fields(self) -> dict:
        """The fields of the `WaveNet` module these settings fix."""
        fields = dataclasses.asdict(self)
        for name in ("head", "num_mixtures", "max_dilation", "repeats", "global_conditioning",
                     "local_conditioning"):
            del fields[name]
        fields["dilations"] = stack_dilations(self.max_dilation, self.repeats)
        fields["dtype"] = jnp.dtype(self.dtype)
        return fields


# --------------------------------------------------------------------------- the network
class WaveNet(nn.Module):
    levels: int = 256  # input alphabet (mu-law codes), one-hot encoded
    num_outputs: int = 256  # head parameters per sample
    residual_channels: int = 32
    dilation_channels: int = 32  # width of each half of the gate
    skip_channels: int = 64
    out_hidden: int = 128
    kernel_size: int = 2
    in_kernel: int = 2  # kernel of the causal input conv
    dilations: Sequence[int] = stack_dilations(512, 1)
    num_speakers: int = 0  # 0: no global conditioning
    speaker_dim: int = 16
    local_features: int = 0  # feature dims per frame (n_mels); 0: no local conditioning
    hop: int = 1  # samples per feature frame
    cond_channels: int = 32  # width of the upsampled local conditioning
    cond_kernel: int = 3  # frame-level (non-causal) conv over the features
    upsample: str = "transposed"  # 'transposed' (learned) or 'repeat'
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        r, dc, dt = self.residual_channels, self.dilation_channels, self.dtype
        conv = lambda f, k, d, name: CausalConv1D(  # noqa: E731
            f, k, d, dtype=dt, param_dtype=self.param_dtype, name=name)
        self.input_conv = conv(r, self.in_kernel, 1, "input")
        n = len(self.dilations)
        self.convs = [conv(2 * dc, self.kernel_size, d, f"dilated_{i}")
                      for i, d in enumerate(self.dilations)]
        self.res = [_dense(r, f"res_{i}", dtype=dt) for i in range(n)]
        self.skips = [_dense(self.skip_channels, f"skip_{i}", dtype=dt) for i in range(n)]
        if self.num_speakers:
            self.speaker_embed = nn.Embed(
                self.num_speakers, self.speaker_dim, dtype=dt, name="speaker_embed",
                embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0),
                                                            (axes.CLASSES, axes.EMBED)))
            self.g_proj = [_dense(2 * dc, f"global_{i}", False, dt) for i in range(n)]
        if self.local_features:
            if self.upsample not in ("transposed", "repeat"):
                raise ConfigError(f"model.upsample must be 'transposed' or 'repeat', got "
                                  f"{self.upsample!r}")
            self.frame_conv = nn.Conv(
                self.cond_channels, (self.cond_kernel,), padding="SAME", dtype=dt,
                name="frame_conv",
                kernel_init=nn.with_logical_partitioning(
                    nn.initializers.lecun_normal(), (axes.TAPS, axes.CONV_IN, axes.CONV_OUT)),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                       (axes.CONV_OUT,)))
            if self.upsample == "transposed":
                self.upsampler = _dense(self.hop * self.cond_channels, "upsample", dtype=dt)
            self.l_proj = [_dense(2 * dc, f"local_{i}", False, dt) for i in range(n)]
        self.out_1 = _dense(self.out_hidden, "out_1", dtype=dt)
        self.out_2 = _dense(self.num_outputs, "out_2", dtype=dt)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.kernel_size, self.dilations, self.in_kernel)

    # ------------------------------------------------------------------ conditioning
    def conditioning(self, labels=None, mel=None):
        """labels [B] -> g [B, E] (or None); mel [B, F, M] -> c [B, F * hop, C] (or None)."""
        g = c = None
        if self.num_speakers:
            if labels is None:
                raise ConfigError("this WaveNet is globally conditioned: pass speaker labels")
            g = self.speaker_embed(labels)
        if self.local_features:
            if mel is None:
                raise ConfigError("this WaveNet is locally conditioned: pass mel features")
            if mel.shape[-1] != self.local_features:
                raise ConfigError(f"local features have {mel.shape[-1]} dims per frame, the "
                                  f"model expects {self.local_features} (data.n_mels)")
            h = jnp.tanh(self.frame_conv(mel.astype(self.dtype)))  # [B, F, C]
            b, f, ch = h.shape
            if self.upsample == "repeat":
                c = jnp.repeat(h, self.hop, axis=1)
            else:  # transposed conv with stride = kernel = hop: one matmul per frame
                c = self.upsampler(h).reshape(b, f * self.hop, ch)  # [B, F * hop, C]
        return g, c

    def _gate_bias(self, i, g, c, full: bool):
        bias = 0.0
        if g is not None:
            gb = self.g_proj[i](g)  # [B, 2D]
            bias = gb[:, None] if full else gb
        if c is not None:
            bias = bias + self.l_proj[i](c)
        return bias

    def _gate(self, h):
        a, b = jnp.split(h, 2, axis=-1)
        return jnp.tanh(a) * jax.nn.sigmoid(b)

    def _head(self, skip):
        h = self.out_1(nn.relu(skip))
        return self.out_2(nn.relu(h)).astype(jnp.float32)

    # ------------------------------------------------------------------ full pass
    @staticmethod
    def inputs(x, levels: int):
        """codes [B, T] -> shifted one-hot inputs y [B, T, levels] (y_t = onehot(x_{t-1}))."""
        y = jax.nn.one_hot(x, levels, dtype=jnp.float32)
        return jnp.pad(y, ((0, 0), (1, 0), (0, 0)))[:, :-1]

    def __call__(self, x, labels=None, mel=None):
        """codes [B, T] -> head outputs [B, T, P]; output t models x_t given x_{<t}."""
        g, c = self.conditioning(labels, mel)
        if c is not None and c.shape[1] < x.shape[1]:
            raise ConfigError(f"local conditioning covers {c.shape[1]} samples, the audio "
                              f"has {x.shape[1]}")
        return self.forward(self.inputs(x, self.levels), g,
                            None if c is None else c[:, : x.shape[1]])

    def forward(self, y, g=None, c=None, valid=None):
        """Shifted inputs y [B, T, levels], g [B, E] | None, c [B, T, C] | None, valid [T] |
        None (positions with valid = 0 are treated as the zero padding before time 0, which
        lets the naive sampler run the network on a window) -> [B, T, P]."""
        keep = (lambda h: h) if valid is None else (  # noqa: E731
            lambda h: h * valid[None, :, None].astype(h.dtype))
        res = self.input_conv(keep(y.astype(self.dtype)))  # [B, T, R]
        skip = 0.0
        for i in range(len(self.dilations)):
            z = self._gate(self.convs[i](keep(res)) + self._gate_bias(i, g, c, True))  # [B, T, D]
            skip = skip + self.skips[i](z)
            res = res + self.res[i](z)
        return self._head(skip)

    # ------------------------------------------------------------------ one step
    def init_cache(self, batch: int) -> dict:
        """Zero queues: the input conv's [B, in_kernel - 1, levels] and one
        [B, (kernel - 1) * d, R] per dilated layer (None where a kernel has one tap)."""
        inp = zero_queue(batch, self.levels, self.in_kernel, 1, self.dtype)
        layers = [zero_queue(batch, self.residual_channels, self.kernel_size, d, self.dtype)
                  for d in self.dilations]
        return {"input": inp, "layers": layers}

    def step(self, y_t, g, c_t, cache: dict, t):
        """y_t [B, levels] (onehot(x_{t-1}), zeros at t = 0), g [B, E] | None, c_t [B, C] |
        None, cache from `init_cache` -> (head outputs [B, P] for x_t, new cache)."""
        res, q_in = self.input_conv(y_t.astype(self.dtype), cache["input"], t, step=True)
        queues, skip = [], 0.0
        for i in range(len(self.dilations)):
            h, q = self.convs[i](res, cache["layers"][i], t, step=True)
            z = self._gate(h + self._gate_bias(i, g, c_t, False))  # [B, D]
            queues.append(q)
            skip = skip + self.skips[i](z)
            res = res + self.res[i](z)
        return self._head(skip), {"input": q_in, "layers": queues}


# --------------------------------------------------------------------------- the family
class WaveNetFamily(Family):
    """WaveNet on audio data (data.kind='audio'): mu-law codes [B, T], speaker labels, mel.

    What it knows of the data comes from the `DataSpec` (levels, speakers, sample_rate, hop,
    n_mels). With local conditioning, samples are conditioned on the features of held-out
    utterances, fixed before anything is traced: `conditioning` is a `SpeakerConditioning`
    or a function of the sample length that returns one (`AudioData.speaker_conditioning`,
    no second read of the folder); without it they are read here, once, from the test split
    of the spec's `source` folder.
    """

    def __init__(self, config, spec,
                 conditioning: audio.SpeakerConditioning | Callable | None = None):
        super().__init__(config, spec)
        self.settings = s = typed(WaveNetSettings, config.model, "model", ignore=("name",))
        if spec.kind != "audio" or len(spec.shape) != 1:
            raise ConfigError(f"wavenet needs audio data [T], got {spec.kind} {spec.shape}")
        self.head = s.make_head(spec.levels)
        self.global_cond = s.global_conditioning and spec.num_classes > 0
        self.local_cond = s.local_conditioning
        if self.local_cond and (spec.hop <= 0 or spec.n_mels <= 0):
            raise ConfigError("model.local_conditioning=True needs audio data with log-mel "
                              f"frames (DataSpec hop, n_mels), got hop={spec.hop} "
                              f"n_mels={spec.n_mels}")
        self.sample_rate, self.hop = spec.sample_rate, spec.hop
        self.model = WaveNet(
            levels=spec.levels, num_outputs=self.head.num_outputs,
            num_speakers=spec.num_classes if self.global_cond else 0,
            local_features=spec.n_mels if self.local_cond else 0, hop=max(spec.hop, 1),
            **s.network_fields())
        self.sampling.no_speculative("wavenet")
        self.draw = self.head.draw_fn(self.sampling)  # checks the sample.* filters
        self.sample_length = self._sample_length()
        self._bank = None  # per speaker: local conditioning of `sample` (test utterances)
        if self.local_cond:
            if conditioning is None:
                self._bank = audio.load_speaker_conditioning(
                    spec.source, audio.AudioFormat.from_spec(spec), self.sample_length)
            elif callable(conditioning):
                self._bank = conditioning(self.sample_length)
            else:
                self._bank = conditioning
            if self._bank.features.shape[1] * self.hop < self.sample_length:
                raise ConfigError(f"the conditioning covers {self._bank.features.shape[1]} "
                                  f"frames, sample.length={self.sample_length} needs more")

    def _sample_length(self) -> int:
        """`sample.length` (default: the training crop), rounded up to whole frames."""
        n = self.sampling.length or self.spec.shape[0]
        hop = max(self.hop, 1)
        return -(-n // hop) * hop

    @property
    def receptive_field(self) -> int:
        return self.model.receptive_field

    def _cond(self, batch):
        return (batch[LABEL] if self.global_cond else None,
                batch[MEL] if self.local_cond else None)

    def init(self, rng, batch):
        return self.model.init(rng, batch[AUDIO], *self._cond(batch))

    def loss(self, params, batch, rng, train, step=None):
        del rng, train
        x = batch[AUDIO]
        out = self.model.apply({"params": params}, x, *self._cond(batch))
        nll = self.head.nll(out, x)  # [B, T] nats
        valid = batch[VALID] if VALID in batch else jnp.ones(x.shape, jnp.float32)
        w = batch[MASK][:, None] * valid
        nll_sum, dims = jnp.sum(nll * w), jnp.sum(w)
        loss = nll_sum / jnp.maximum(dims, 1.0)  # nats per sample
        return loss, {"nll_sum": nll_sum, "num_dims": dims, "num_examples": jnp.sum(batch[MASK])}

    # ------------------------------------------------------------------ generation
    def conditioning(self, params, labels=None, mel=None):
        return self.model.apply({"params": params}, labels, mel,
                                method=WaveNet.conditioning)

    def generate(self, params, keys, num_steps: int, labels=None, mel=None,
                 method: str = "fast", return_outputs: bool = False):
        """keys [B, 2] (one per sample) -> codes [B, num_steps] (and, with return_outputs,
        the head outputs of every step [num_steps, B, P]). method 'fast' (queues) or
        'naive' (re-run the receptive-field window). Draws with `config.sample`'s settings.
        Jittable; both use the one loop."""
        steps = self.steps(params, keys.shape[0], num_steps, labels, mel, method)
        draw, write = self.draw, steps.write_fn
        if return_outputs:
            base = draw

            def draw(keys_t, out, t):
                return base(keys_t, out, t), out

            def write(seq, x, t):
                return steps.write_fn(seq, x[0], t)

        state, xs = dataclasses.replace(steps, write_fn=write).run(draw, keys)
        codes = state.seq[:, state.seq.shape[1] - num_steps:]
        return (codes, xs[1]) if return_outputs else codes

    def steps(self, params, batch: int, num_steps: int, labels=None, mel=None,
              method: str = "fast") -> Steps:
        """The generation order: step t returns the head outputs [B, P] of sample t. 'fast':
        the cache is every layer's queue, seq [B, T] holds x_0, x_1, ...; 'naive': no cache,
        seq holds RF padding slots, then x_0, x_1, ..."""
        g, c = self.conditioning(params, labels if self.global_cond else None,
                                 mel if self.local_cond else None)
        if c is not None and c.shape[1] < num_steps:
            raise ConfigError(f"local conditioning covers {c.shape[1]} samples, asked for "
                              f"{num_steps}")
        if method == "fast":
            step_fn, cache, offset = self._fast(params, g, c), self.model.init_cache(batch), 0
        elif method == "naive":
            step_fn, cache, offset = self._naive(params, g, c), None, self.receptive_field
        else:
            raise ConfigError(f"generation method must be 'fast' or 'naive', got {method!r}")

        def write_fn(seq, x, t):
            return seq.at[:, offset + t].set(x.astype(seq.dtype))

        seq = jnp.zeros((batch, offset + num_steps), jnp.int32)
        return Steps(step_fn, write_fn, seq, cache, num_steps)

    def _fast(self, params, g, c):
        levels = self.spec.levels

        def step_fn(seq, cache, t):
            prev = jax.lax.dynamic_index_in_dim(seq, jnp.maximum(t - 1, 0), 1, keepdims=False)
            y_t = jax.nn.one_hot(prev, levels) * (t > 0)  # [B, levels]
            c_t = None if c is None else jax.lax.dynamic_index_in_dim(c, t, 1, keepdims=False)
            return self.model.apply({"params": params}, y_t, g, c_t, cache, t,
                                    method=WaveNet.step)

        return step_fn

    def _naive(self, params, g, c):
        levels, w = self.spec.levels, self.receptive_field
        j = jnp.arange(w)
        c_pad = None if c is None else jnp.pad(c, ((0, 0), (w - 1, 0), (0, 0)))

        def step_fn(seq, cache, t):
            # seq holds w padding slots then x_0, x_1, ...: window = x_{t-w}, ..., x_{t-1},
            # the inputs y_{t-w+1}, ..., y_t of the last w positions.
            codes = jax.lax.dynamic_slice_in_dim(seq, t, w, axis=1)  # [B, w]
            y = jax.nn.one_hot(codes, levels) * (j >= w - t)[None, :, None]
            valid = (j >= w - 1 - t).astype(jnp.float32)  # y position >= 0
            c_w = None if c_pad is None else jax.lax.dynamic_slice_in_dim(c_pad, t, w, axis=1)
            out = self.model.apply({"params": params}, y, g, c_w, valid,
                                   method=WaveNet.forward)
            return out[:, -1], cache

        return step_fn

    # ------------------------------------------------------------------ Family API
    def conditioning_bank(self) -> audio.SpeakerConditioning | None:
        """Local conditioning for `sample`: per speaker, the features (and codes) of the
        start of one held-out test utterance, `sample_length` samples long (loaded at
        construction; None without local conditioning)."""
        return self._bank

    def sample(self, params, keys, labels=None, mel=None):
        """Fast generation of `sample_length` samples; with local conditioning, sample b is
        conditioned on `mel` [B, F, M], by default the features of a test utterance of
        speaker labels[b] (see `conditioning_bank`)."""
        if self.local_cond and mel is None:
            feats = self._bank.features
            idx = labels % feats.shape[0] if labels is not None else jnp.zeros(
                keys.shape[0], jnp.int32)
            mel = jnp.asarray(feats)[idx]
        return self.generate(params, keys, self.sample_length, labels, mel)

    # ------------------------------------------------------------------ lossless codec
    def coding_steps(self, params, shape, labels) -> Steps:
        """Fast generation (the queues) over codes [B, T], shape = (T,)."""
        if self.local_cond:
            raise ConfigError("a locally conditioned WaveNet cannot drive the codec: the "
                              "decoder would need the log-mel features of the audio it is "
                              "decoding (train with :nolocal)")
        if len(shape) != 1:
            raise DataError(f"WaveNet codes 1-D audio, got data of shape {tuple(shape)}")
        return self.steps(params, labels.shape[0], shape[0], labels)

    def coding_symbols(self) -> CodingSymbols:
        levels = self.spec.levels
        if isinstance(self.head, CategoricalHead):
            return categorical_symbols(levels, lambda codes: jnp.asarray(codes).T)

        def log_probs(out, x, stage):
            del x, stage
            return logistic_mixture.channel_log_probs(out, jnp.zeros(out.shape[:1] + (1,),
                                                                     jnp.int32), 0, levels)[:, None]

        def targets(codes):
            return jnp.asarray(codes).T[:, :, None, None]

        return CodingSymbols(levels, log_probs, lambda x: x[:, 0, 0], targets)

    def coding_labels(self):
        return (self.spec.num_classes if self.global_cond else 0), None

    def save_samples(self, samples, path_stem: str, columns: int | None = None) -> list[str]:
        """One 16-bit WAV per sample (PATH_STEM_k.wav); with local conditioning also the
        conditioning utterances (PATH_STEM_cond_s.wav). `columns` (grids) does not apply."""
        paths = []
        for k, codes in enumerate(np.asarray(samples)):
            paths.append(audio.write_wav(f"{path_stem}_{k:03d}.wav",
                                         mulaw.dequantize(codes.astype(np.int32)),
                                         self.sample_rate))
        if self.local_cond:
            for s, codes in enumerate(self._bank.codes):
                paths.append(audio.write_wav(f"{path_stem}_cond_{s:02d}.wav",
                                             mulaw.dequantize(codes.astype(np.int32)),
                                             self.sample_rate))
        os.makedirs(os.path.dirname(path_stem) or ".", exist_ok=True)
        return paths
