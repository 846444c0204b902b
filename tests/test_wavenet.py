"""WaveNet: causal conv, mu-law, receptive field, fast == naive generation, conditioning,
audio data and a tiny end-to-end run. Audio is generated sines (no espeak-ng needed)."""
import glob
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from argen_jax.data import audio
from argen_jax.data.pipeline import DataBuilder
from argen_jax.heads import mulaw
from argen_jax.layers.causal_conv import CausalConv1D, receptive_field
from argen_jax.models.wavenet import WaveNet, WaveNetFamily
from experiments.wavenet import paper

RATE_IN = 16000  # files are written at 16 kHz; the tiny config resamples to 8 kHz


def _sine(freq, seconds, rate=RATE_IN, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t) * np.minimum(1.0, 20 * t)


@pytest.fixture(scope="module")
def sine_folder(tmp_path_factory):
    """Two "speakers" (different pitches), 4 train and 1 test utterance each."""
    root = tmp_path_factory.mktemp("sines")
    for s, base in enumerate((220.0, 440.0)):
        for split, n in (("train", 4), ("test", 1)):
            for k in range(n):
                x = _sine(base * (1 + 0.1 * k + 0.05 * (split == "test")), 0.25 + 0.05 * k)
                audio.write_wav(str(root / split / f"spk{s}" / f"{k}.wav"), x, RATE_IN)
    return str(root)


def _config(path, *args):
    c = paper.get_config(",".join(("tiny",) + args))
    c.data.path = path
    return c


@pytest.fixture(scope="module")
def family_and_batch(sine_folder):
    cfg = _config(sine_folder)
    data = audio.build_audio_data(cfg.data, cfg.seed)
    fam = WaveNetFamily(cfg, data.spec)
    batch = jax.tree.map(jnp.asarray, data.train_batch(0))
    params = jax.jit(lambda r, b: nn.unbox(fam.init(r, b)["params"]))(
        jax.random.PRNGKey(0), batch)
    return fam, params, batch, data


# --------------------------------------------------------------------------- mu-law
def test_mulaw_round_trip():
    codes = np.arange(256)
    np.testing.assert_array_equal(mulaw.quantize(mulaw.dequantize(codes)), codes)
    x = np.linspace(-1, 1, 10001)
    np.testing.assert_allclose(mulaw.expand(mulaw.compress(x)), x, atol=1e-6)
    # jax arrays give the same codes as numpy
    np.testing.assert_array_equal(np.asarray(mulaw.quantize(jnp.asarray(x))), mulaw.quantize(x))
    # quantisation error: at most half a step in the companded domain
    y = mulaw.compress(x)
    yq = mulaw.compress(mulaw.dequantize(mulaw.quantize(x)))
    assert np.max(np.abs(y - yq)) <= 1.0 / 255 + 1e-6
    # fine resolution near zero, coarse near full scale
    assert mulaw.dequantize(129) - mulaw.dequantize(128) < 1e-3
    assert mulaw.dequantize(255) - mulaw.dequantize(254) > 0.02
    assert mulaw.silence_code() in (127, 128)


# --------------------------------------------------------------------------- causal conv
@pytest.mark.parametrize("kernel,dilation", [(2, 4), (3, 2)])
def test_causal_conv_step_equals_full(rng, kernel, dilation):
    conv = CausalConv1D(5, kernel, dilation)
    x = jax.random.normal(rng, (2, 17, 3))
    params = conv.init(rng, x)
    full = conv.apply(params, x)
    queue = conv.init_queue(2, 3)
    outs = []
    for t in range(x.shape[1]):
        y, queue = conv.apply(params, x[:, t], queue, jnp.int32(t), step=True)
        outs.append(y)
    np.testing.assert_allclose(np.stack(outs, 1), full, atol=1e-5)
    # output t does not change when inputs after t change (causal)
    x2 = x.at[:, 9:].set(7.0)
    np.testing.assert_array_equal(conv.apply(params, x2)[:, :9], full[:, :9])
    assert not np.allclose(conv.apply(params, x2)[:, 9], full[:, 9])


# --------------------------------------------------------------------------- causality
@pytest.mark.parametrize("kernel,in_kernel,dilations", [(2, 2, (1, 2, 4, 1, 2, 4)),
                                                        (3, 1, (1, 3))])
def test_causality_and_receptive_field(rng, kernel, in_kernel, dilations):
    """d out_t / d x_s is nonzero exactly for t - RF <= s <= t - 1 (grad through the one-hot
    inputs y_s = onehot(x_{s-1}))."""
    model = WaveNet(levels=16, num_outputs=16, residual_channels=4, dilation_channels=4,
                    skip_channels=4, out_hidden=4, kernel_size=kernel, in_kernel=in_kernel,
                    dilations=dilations)
    rf = receptive_field(kernel, dilations, in_kernel)
    assert model.receptive_field == rf == (in_kernel - 1) + (kernel - 1) * sum(dilations) + 1
    n, t = 40, 33
    x = jax.random.randint(rng, (1, n), 0, 16)
    params = model.init(rng, x)
    y = WaveNet.inputs(x, 16) + 0.1  # dense inputs: no structural zeros hide a dependency

    def out_t(y):
        return model.apply(params, y, method=WaveNet.forward)[0, t].sum()

    g = jnp.abs(jax.jit(jax.grad(out_t))(y)).sum(-1)[0]  # [n] over y_s = onehot(x_{s-1})
    seen = np.flatnonzero(np.asarray(g) > 0)
    np.testing.assert_array_equal(seen, np.arange(t - rf + 1, t + 1))
    # through the codes: x_t and later never matter
    apply = jax.jit(model.apply)
    x2 = x.at[:, t:].set((x[:, t:] + 5) % 16)
    np.testing.assert_array_equal(apply(params, x2)[:, :t + 1], apply(params, x)[:, :t + 1])


# --------------------------------------------------------------------------- generation
def test_fast_generation_equals_naive(family_and_batch):
    """Same keys -> same codes and the same logits at every step, for the queue sampler,
    the re-run-the-window sampler and the full teacher-forced pass."""
    fam, params, batch, _ = family_and_batch
    rf = fam.receptive_field
    n = 3 * rf  # well past the first window
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    labels = jnp.array([0, 1])
    mel = batch["mel"][:2]
    gen = jax.jit(fam.generate, static_argnames=("num_steps", "method", "return_outputs"))
    fast, out_f = gen(params, keys, n, labels, mel, method="fast", return_outputs=True)
    naive, out_n = gen(params, keys, n, labels, mel, method="naive", return_outputs=True)
    chex.assert_shape(fast, (2, n))
    chex.assert_shape(out_f, (n, 2, 256))
    np.testing.assert_allclose(out_f, out_n, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(fast, naive)
    full = fam.model.apply({"params": params}, fast, labels, mel)  # [2, n, 256]
    np.testing.assert_allclose(out_f.swapaxes(0, 1), full, atol=1e-4, rtol=1e-4)
    assert len(np.unique(np.asarray(fast))) > 5  # it samples, not a constant


def test_logistic_mixture_head_fast_equals_naive(sine_folder):
    """The PixelCNN++ mixture head plugs in: finite NLL, and queue generation draws exactly
    the codes of the re-run-the-window generator."""
    cfg = _config(sine_folder)
    cfg.model.head = "logistic_mixture"
    cfg.model.num_mixtures = 3
    data = audio.build_audio_data(cfg.data, cfg.seed)
    fam = WaveNetFamily(cfg, data.spec)
    batch = jax.tree.map(jnp.asarray, data.train_batch(0))
    params = nn.unbox(fam.init(jax.random.PRNGKey(0), batch)["params"])
    loss, sums = fam.loss(params, batch, jax.random.PRNGKey(1), False)
    assert np.isfinite(loss) and 0 < float(sums["nll_sum"])
    n = fam.receptive_field + 5
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    labels, mel = jnp.array([0, 1]), batch["mel"][:2]
    gen = jax.jit(fam.generate, static_argnames=("num_steps", "method", "return_outputs"))
    fast, out_f = gen(params, keys, n, labels, mel, method="fast", return_outputs=True)
    naive, out_n = gen(params, keys, n, labels, mel, method="naive", return_outputs=True)
    chex.assert_shape(out_f, (n, 2, 9))
    np.testing.assert_allclose(out_f, out_n, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(fast, naive)


def test_conditioning_changes_output(family_and_batch):
    fam, params, batch, _ = family_and_batch
    x, labels, mel = batch["audio"][:2], jnp.array([0, 0]), batch["mel"][:2]
    apply = lambda lab, m: fam.model.apply({"params": params}, x, lab, m)  # noqa: E731
    base = apply(labels, mel)
    other_speaker = apply(jnp.array([1, 1]), mel)
    other_mel = apply(labels, mel.at[:, 3:].set(mel[:, ::-1][:, 3:]))
    assert np.abs(base - other_speaker).mean() > 1e-3
    # local conditioning is local: frames before 2 (frame conv sees +-1 frame) are untouched
    hop = fam.hop
    np.testing.assert_allclose(other_mel[:, : 2 * hop], base[:, : 2 * hop], atol=1e-6)
    assert np.abs(other_mel[:, 4 * hop :] - base[:, 4 * hop :]).mean() > 1e-3


def test_unconditioned_model_ignores_labels_and_mel(sine_folder):
    cfg = _config(sine_folder, "nolocal", "noglobal")
    data = audio.build_audio_data(cfg.data, cfg.seed)
    fam = WaveNetFamily(cfg, data.spec)
    params = jax.eval_shape(fam.init, jax.random.PRNGKey(0), data.train_batch(0))["params"]
    assert "out_2" in params
    assert not any("local" in k or "global" in k or "speaker" in k for k in params)


# --------------------------------------------------------------------------- data
def test_audio_data(family_and_batch, sine_folder):
    fam, _, batch, data = family_and_batch
    cfg = _config(sine_folder).data
    t, hop = cfg.crop_length, cfg.hop
    chex.assert_shape(batch["audio"], (8, t))
    chex.assert_shape(batch["mel"], (8, t // hop, cfg.n_mels))
    assert data.spec.num_classes == 2 and data.spec.kind == "audio"
    b0, b0_again = data.train_batch(5), data.train_batch(5)
    for k in b0:
        np.testing.assert_array_equal(b0[k], b0_again[k])  # batch = f(seed, step)
    # resampled 16 kHz -> 8 kHz keeps the pitch: 220 Hz peak of speaker 0's first file
    x, rate = audio.read_wav(os.path.join(sine_folder, "train", "spk0", "0.wav"))
    y = audio.resample(x, rate, 8000)
    assert abs(len(y) - len(x) / 2) <= 1
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 8000 / len(y) - 220.0) < 5.0
    # eval scores every test sample exactly once, each with eval_context real history
    total = sum(len(c) for c in data.test_set.codes)
    scored = sum(float((b["valid"] * b["mask"][:, None]).sum()) for b in data.eval_batches())
    assert scored == total
    # features follow the audio: louder frames have more mel energy
    feats = data.test_set.feats[0]
    assert feats[2:].mean() > data.fmt.silence_features().mean() + 1.0


def test_tiny_training_run_writes_wavs(sine_folder, tmp_path):
    from argen_jax.train import loop

    cfg = _config(sine_folder)
    m = loop.train(cfg, str(tmp_path))
    assert m["eval/bpd"] < 8.0  # better than a uniform 256-way code after 20 steps on sines
    wavs = sorted(glob.glob(str(tmp_path / "samples" / "*.wav")))
    assert len(wavs) == cfg.sample.num + 2  # samples + the 2 conditioning utterances
    x, rate = audio.read_wav(wavs[0])
    assert rate == cfg.data.sample_rate and len(x) == cfg.sample.length


def test_sampling_conditioning_is_loaded_before_tracing(sine_folder, tmp_path):
    """The test utterances that condition `sample` are read at construction (or passed in):
    the jitted sampler reads no file, so it runs after the folder is gone."""
    import shutil

    folder = str(tmp_path / "sines")
    shutil.copytree(sine_folder, folder)
    cfg = _config(folder)
    data = audio.build_audio_data(cfg.data, cfg.seed)
    assert data.spec.source == folder and (data.spec.hop, data.spec.n_mels) == (40, 8)
    assert isinstance(data, DataBuilder)
    fam = WaveNetFamily(cfg, data.spec)  # reads the test utterances here
    passed = WaveNetFamily(cfg, data.spec, data.speaker_conditioning)  # no second read
    for a, b in zip(fam.conditioning_bank(), passed.conditioning_bank(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert fam.conditioning_bank().features.shape == (2, cfg.sample.length // 40, 8)
    shutil.rmtree(folder)
    batch = jax.tree.map(jnp.asarray, data.train_batch(0))
    params = nn.unbox(fam.init(jax.random.PRNGKey(0), batch)["params"])
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    codes = jax.jit(fam.sample)(params, keys, jnp.array([0, 1]))
    chex.assert_shape(codes, (2, cfg.sample.length))
    np.testing.assert_array_equal(codes, jax.jit(passed.sample)(params, keys, jnp.array([0, 1])))


def test_settings_validate_and_name_the_key(sine_folder):
    from argen_jax.config_lib import typed
    from argen_jax.errors import ConfigError
    from argen_jax.models.wavenet import WaveNetSettings

    with pytest.raises(ConfigError, match="model.max_dilation"):
        WaveNetSettings(max_dilation=6)
    with pytest.raises(ConfigError, match="model.head"):
        WaveNetSettings(head="gaussian")
    with pytest.raises(ConfigError, match="model.residual_chanels"):
        typed(WaveNetSettings, {"residual_chanels": 4}, "model")
    cfg = _config(sine_folder, "nolocal")
    cfg.model.head = "logistic_mixture"
    cfg.sample.top_p = 0.9
    spec = audio.build_audio_data(cfg.data, cfg.seed).spec
    with pytest.raises(ConfigError, match="sample.top_p"):
        WaveNetFamily(cfg, spec)


def test_builtin_tones_need_no_files():
    """wavenet/*.py:tiny trains on `builtin:tones` (no espeak-ng, no prepare step): four
    voices, the same audio every time, speakers that differ in pitch."""
    c = paper.get_config("tiny")
    assert c.data.path == audio.BUILTIN_TONES
    data = audio.build_audio_data(c.data, c.seed)
    assert data.spec.num_classes == 4 and len(data.train_set) == 48
    assert len(data.test_set) == 12 and data.spec.source == audio.BUILTIN_TONES
    again = audio.synthetic_tones("train", data.fmt)
    for a, b in zip(again.codes, data.train_set.codes, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(len(x) >= c.data.crop_length for x in data.train_set.codes)
    spread = [np.std(np.asarray(x, np.float64)) for x in data.train_set.codes]
    assert min(spread) > 5  # not silence: mu-law codes move
    bank = audio.load_speaker_conditioning(audio.BUILTIN_TONES, data.fmt, 400)
    assert bank.features.shape == (4, 10, c.data.n_mels)
    lim = audio.synthetic_tones("train", data.fmt, limit=4)
    assert sorted(lim.speakers.tolist()) == [0, 1, 2, 3]
