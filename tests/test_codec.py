"""The lossless codec: decode(encode(x)) == x bit for bit for every head (grey categorical,
RGB logistic mixture, mu-law WaveNet, LlamaGen tokens), code lengths at the model's NLL,
refusal of another model's or a damaged file, and the command line on a tiny trained run.
Tiny random models and small shapes; data drawn from the model where the code length is
compared (random data under a random model hits the tables' floor of 1 / 2^24)."""
import os
import subprocess
import sys
import types

import constriction
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from argen_jax.codec import Codec, format
from argen_jax.codec.tables import PRECISION, code_length_bits, coder_weights, frequencies
from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import CodecError, ConfigError, DataError
from argen_jax.heads import mulaw
from argen_jax.sampling.loop import sample_keys
from tests.model_utils import random_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stream_bits(e) -> int:
    return 8 * (len(e.data) - e.header_bytes)


def _nll_bits(family, params, batch) -> np.ndarray:
    """The family's own loss: nats summed over the batch -> bits."""
    _, sums = family.loss(params, batch, jax.random.PRNGKey(0), False)
    return float(sums["nll_sum"]) / np.log(2.0)


def _round_trip(codec, data, labels=None, batch_size=8, decoded_labels=None):
    enc = codec.encode(data, labels, batch_size=batch_size)
    dec = codec.decode([e.data for e in enc])
    for x, (y, _) in zip(data, dec, strict=True):
        assert y.shape == np.asarray(x).shape and np.array_equal(y, x)
    if labels is not None:
        assert [lab for _, lab in dec] == list(decoded_labels or labels)
    return enc


def test_tables_are_exact_in_constriction():
    """frequencies: >= 1, sum 2^24; constriction codes exactly these tables (code length =
    -sum log2 f / 2^24 up to the final words), also for probabilities far below 2^-24."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 256)) * 8.0
    logits[:5] = -1e4  # all mass tiny but one
    logits[:5, 3] = 0.0
    f = np.asarray(frequencies(jnp.asarray(logits, jnp.float32)))
    assert f.min() >= 1 and np.all(f.sum(-1) == 1 << PRECISION)
    sym = rng.integers(0, 256, 300).astype(np.int32)
    model = constriction.stream.model.Categorical(perfect=False)
    enc = constriction.stream.queue.RangeEncoder()
    for i in range(300):
        enc.encode(sym[i:i + 1], model, coder_weights(f[i:i + 1]))
    words = enc.get_compressed()
    ideal = code_length_bits(f, sym)
    assert ideal <= 32 * len(words) <= ideal + 64
    dec = constriction.stream.queue.RangeDecoder(words)
    out = [int(dec.decode(model, coder_weights(f[i:i + 1]))[0]) for i in range(300)]
    assert out == sym.tolist()


@pytest.fixture(scope="module")
def grey():
    """A class-conditional Gated PixelCNN on 5x4 grey images (256-way categorical)."""
    from argen_jax.models.pixelcnn import PixelCNNFamily

    cfg = ConfigDict({"model": {"name": "gated_pixelcnn", "features": 8, "num_layers": 2,
                                "conditional": True}, "sample": {}})
    fam = PixelCNNFamily(cfg, DataSpec((5, 4, 1), 256, num_classes=3))
    params = random_params(fam.model, jnp.zeros((1, 5, 4, 1), jnp.int32),
                           jnp.zeros((1,), jnp.int32))["params"]
    return fam, params


def test_grey_categorical_round_trip_edges_labels_and_subsets(grey):
    fam, params = grey
    codec = Codec(fam, params, "/runs/grey", 12)
    rng = np.random.default_rng(1)
    data = [np.zeros((5, 4, 1), np.uint8), np.full((5, 4, 1), 255, np.uint8)]
    data += [rng.integers(0, 256, (5, 4, 1)).astype(np.uint8) for _ in range(3)]
    enc = _round_trip(codec, data, [0, 1, 2, 0, 1], batch_size=3)  # batches of 3 and 2
    h, _ = format.unpack(enc[4].data)
    assert (h.run, h.step, h.shape, h.label, h.batch, h.row) == ("grey", 12, (5, 4, 1), 1, 2, 1)
    # one file alone is decoded in its row of its batch's geometry
    (x, label), = codec.decode([enc[1].data])
    assert np.array_equal(x, data[1]) and label == 1
    with pytest.raises(DataError, match="label"):
        codec.encode(data[:1])  # a conditional model needs one
    with pytest.raises(DataError, match="shape"):
        codec.encode([np.zeros((4, 4, 1), np.uint8)], [0])


def test_grey_code_length_is_the_models_nll(grey):
    fam, params = grey
    keys = sample_keys(jax.random.PRNGKey(3), 0, 6)
    labels = jnp.arange(6) % 3
    images = np.asarray(jax.jit(fam.sample)(params, keys, labels))
    enc = _round_trip(Codec(fam, params), list(images), labels.tolist())
    nll = _nll_bits(fam, params, {"image": images, "label": labels, "mask": jnp.ones(6)})
    table = sum(e.table_bits for e in enc)
    assert abs(table - nll) < 0.01 * nll + 1  # the integer tables cost what the model says
    for e in enc:  # each stream: its table bits rounded up to 32-bit words, + <= 1 word
        assert e.table_bits <= _stream_bits(e) <= e.table_bits + 64


@pytest.fixture(scope="module")
def rgb():
    """PixelCNN++ on 4x4 RGB: discretized logistic mixture with the RGB coupling."""
    from argen_jax.models.pixelcnnpp import PixelCNNPPFamily

    cfg = ConfigDict({"model": {"name": "pixelcnnpp", "features": 8, "num_resnet": 1,
                                "num_resolutions": 1, "num_mixtures": 3, "dropout": 0.0},
                      "sample": {}})
    fam = PixelCNNPPFamily(cfg, DataSpec((4, 4, 3), 256))
    params = random_params(fam.model, jnp.zeros((1, 4, 4, 3), jnp.int32), scale=0.2)["params"]
    return fam, params


def test_rgb_mixture_round_trip_and_code_length(rgb):
    fam, params = rgb
    codec = Codec(fam, params, "rgb", 1)
    images = np.asarray(jax.jit(fam.sample)(params, sample_keys(jax.random.PRNGKey(0), 0, 4),
                                            None))
    edges = np.zeros((2, 4, 4, 3), np.int32)
    edges[1] = 255
    edges[0, 1, 2] = (255, 0, 255)
    data = [x.astype(np.uint8) for x in np.concatenate([images, edges])]
    enc = _round_trip(codec, data, batch_size=6)
    nll = _nll_bits(fam, params, {"image": images, "mask": jnp.ones(4)})
    table = sum(e.table_bits for e in enc[:4])
    assert abs(table - nll) < 0.01 * nll + 1
    assert sum(_stream_bits(e) for e in enc[:4]) <= nll + 4 * 64 + 0.01 * nll


@pytest.fixture(scope="module")
def wavenet():
    """A tiny speaker-conditioned WaveNet (no local conditioning) over 256 mu-law codes."""
    from argen_jax.models.wavenet import WaveNetFamily
    from experiments.wavenet import paper

    cfg = paper.get_config("tiny,nolocal")
    spec = DataSpec((400,), 256, num_classes=2, kind="audio", sample_rate=8000)
    fam = WaveNetFamily(cfg, spec)
    params = random_params(fam.model, jnp.zeros((1, 16), jnp.int32),
                           jnp.zeros((1,), jnp.int32), scale=0.2)["params"]
    return fam, params


def test_mulaw_wavenet_round_trip_of_different_lengths(wavenet):
    fam, params = wavenet
    codec = Codec(fam, params, "wn", 3)
    t = np.arange(300) / 8000.0
    sine = mulaw.quantize(0.6 * np.sin(2 * np.pi * 300 * t)).astype(np.uint8)
    edges = np.array([0, 255, 0, 255, 128, 0, 255], np.uint8)
    data = [sine, sine[:130], edges]
    enc = _round_trip(codec, data, [1, 0, 1], batch_size=3)
    assert format.unpack(enc[1].data)[0].padded == 300
    # the code length of each utterance is the model's NLL of it (from t = 0)
    batch = {"audio": jnp.asarray(sine[None]), "label": jnp.ones((1,), jnp.int32),
             "mask": jnp.ones(1)}
    nll = _nll_bits(fam, params, batch)
    assert abs(enc[0].table_bits - nll) < 0.01 * nll + 1
    with pytest.raises(DataError, match="label"):
        codec.encode([sine])  # a speaker-conditioned model needs the speaker


def test_wavenet_mixture_head_round_trip():
    """WaveNet's discretized logistic mixture head over the 256 mu-law bins."""
    from argen_jax.models.wavenet import WaveNetFamily
    from experiments.wavenet import paper

    cfg = paper.get_config("tiny,nolocal,noglobal")
    cfg.model.head, cfg.model.num_mixtures = "logistic_mixture", 2
    fam = WaveNetFamily(cfg, DataSpec((400,), 256, kind="audio", sample_rate=8000))
    params = random_params(fam.model, jnp.zeros((1, 16), jnp.int32), scale=0.2)["params"]
    codes = fam.generate(params, sample_keys(jax.random.PRNGKey(0), 0, 2), 90)
    data = [np.asarray(c, np.uint8) for c in codes] + [np.array([0, 255, 255, 0], np.uint8)]
    enc = _round_trip(Codec(fam, params), data)
    nll = _nll_bits(fam, params, {"audio": codes, "mask": jnp.ones(2)})
    assert abs(sum(e.table_bits for e in enc[:2]) - nll) < 0.01 * nll + 1


def test_locally_conditioned_wavenet_is_refused():
    from argen_jax.models.wavenet import WaveNetFamily
    from experiments.wavenet import paper

    spec = DataSpec((400,), 256, kind="audio", sample_rate=8000, hop=40, n_fft=160, n_mels=8)
    bank = types.SimpleNamespace(features=np.zeros((1, 10, 8), np.float32))  # 400 samples
    fam = WaveNetFamily(paper.get_config("tiny,noglobal"), spec, conditioning=bank)
    with pytest.raises(ConfigError, match="local"):
        fam.coding_steps({}, (100,), jnp.zeros((1,), jnp.int32))


def test_llamagen_tokens_round_trip():
    from argen_jax.models.llamagen import LlamaGenFamily
    from experiments.llamagen.fashion_mnist import get_config

    cfg = get_config("tiny")
    cfg.model.width, cfg.model.num_heads, cfg.model.depth = 16, 2, 2
    fam = LlamaGenFamily(cfg, DataSpec((12,), 40, 3, "tokens", grid=(3, 4)))
    tokens = jnp.zeros((1, 12), jnp.int32)
    params = random_params(fam.model, fam.inputs(tokens, jnp.zeros((1,), jnp.int32)))["params"]
    codec = Codec(fam, params)
    rng = np.random.default_rng(0)
    data = [rng.integers(0, 40, 12), np.zeros(12, int), np.full(12, 39)]
    enc = _round_trip(codec, data, [2, None, 0], decoded_labels=[2, 3, 0])  # None: null class
    batch = {"tokens": jnp.asarray(np.stack(data)), "label": jnp.asarray([2, 3, 0]),
             "mask": jnp.ones(3)}
    nll = _nll_bits(fam, params, batch)
    assert abs(sum(e.table_bits for e in enc) - nll) < 0.01 * nll + 1


def test_another_models_or_a_damaged_file_is_refused_in_one_line(grey):
    fam, params = grey
    codec = Codec(fam, params, "a", 1)
    x = np.random.default_rng(0).integers(0, 256, (5, 4, 1)).astype(np.uint8)
    (e,) = codec.encode([x], [0])
    other = Codec(fam, jax.tree.map(lambda p: p * 1.001, params), "b", 2)
    errors = []
    with pytest.raises(CodecError, match="another model") as info:
        other.decode([e.data], ["x.ajc"])
    errors.append(info.value)
    for pos in (1, 10, e.header_bytes - 1):  # magic, parameters checksum, header checksum
        bad = bytearray(e.data)
        bad[pos] ^= 0x20
        with pytest.raises(CodecError) as info:
            codec.decode([bytes(bad)])
        errors.append(info.value)
    with pytest.raises(CodecError, match="truncated"):
        codec.decode([e.data[:12]])
    bad = bytearray(e.data)
    bad[-5] ^= 0xFF  # the stream: caught by the data checksum after decoding
    with pytest.raises(CodecError, match="damaged stream|checksum"):
        codec.decode([bytes(bad)])
    assert all("\n" not in str(err) for err in errors)


def _tiny_run(workdir):
    """A Gated PixelCNN trained for 2 steps on 8x8 digits (class-conditional, 8-bit)."""
    from argen_jax.train import loop
    from experiments.pixelcnn.mnist import get_config

    c = get_config("tiny,8bit")
    c.data.name = "digits"
    c.data.test_limit, c.data.eval_batch_size = 16, 16
    c.model.num_layers = 1
    c.train.num_steps, c.train.save_every, c.train.log_every = 2, 2, 1
    c.train.sample_at_end = False
    c.eval.sample_metrics = False
    loop.train(c, workdir)


def test_command_line_round_trip_and_one_line_refusal(tmp_path):
    from PIL import Image

    run = str(tmp_path / "run")
    _tiny_run(run)
    rng = np.random.default_rng(0)
    ins = []
    for k, img in enumerate([rng.integers(0, 256, (8, 8)), np.zeros((8, 8)),
                             np.full((8, 8), 255)]):
        ins.append(str(tmp_path / f"img{k}.png"))
        Image.fromarray(img.astype(np.uint8)).save(ins[-1])
    env = {**os.environ, "PYTHONPATH": REPO}
    cli = [sys.executable, "-m", "argen_jax.codec"]

    def call(*args):
        return subprocess.run(cli + list(args), capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=600)

    enc = call("encode", f"--workdir={run}", *ins, f"--out={tmp_path / 'z'}", "--label=3")
    assert enc.returncode == 0, enc.stderr
    zs = sorted(str(tmp_path / "z" / f) for f in os.listdir(tmp_path / "z"))
    assert [os.path.basename(z) for z in zs] == ["img0.ajc", "img1.ajc", "img2.ajc"]
    bad = tmp_path / "bad.ajc"
    bad.write_bytes(b"XYZ" + open(zs[0], "rb").read()[3:])
    dec = call("decode", f"--workdir={run}", *zs, f"--out={tmp_path / 'd'}")
    assert dec.returncode == 0, dec.stderr
    for src in ins:
        name = os.path.basename(src)
        assert np.array_equal(np.asarray(Image.open(src)),
                              np.asarray(Image.open(tmp_path / "d" / name)))
    refused = call("decode", f"--workdir={run}", str(bad), f"--out={tmp_path / 'e'}")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "magic" in refused.stderr and "Traceback" not in refused.stderr
