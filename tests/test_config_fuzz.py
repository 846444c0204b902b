"""Property test: random overrides of every config section of each family's `:tiny` config
either build a run (the experiment, its data and model, the traced training step) or are
refused with the project's one-line UserError, never another exception, and a refused run
writes nothing into its workdir (hypothesis shrinks a failure to the smallest override)."""
import math
import os

import jax
import ml_collections
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from argen_jax.errors import UserError
from argen_jax.parallel import mesh as meshlib
from argen_jax.run import run
from argen_jax.train.experiment import Experiment

INTS = st.integers(-2, 64)  # (huge sizes would build huge models: that is not an error)
FLOATS = st.one_of(st.floats(-5.0, 5.0), st.sampled_from([-1.0, 0.0, 1e30, math.nan, math.inf]))
STRINGS = st.sampled_from(["", "nosuch", "float8", "none", "auto", "train", "bfloat16"])
TUPLES = st.sampled_from([(), (0,), (1, 2), (-1,), (2, 2, 2)])


def _value(current):
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int):
        return INTS
    if isinstance(current, float):
        return FLOATS
    if isinstance(current, str):
        return st.one_of(STRINGS, st.just(current))
    if isinstance(current, tuple):
        return TUPLES
    return None  # None-valued and nested fields: left as they are


def _leaves(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
    """(section, key) of every overridable value (the launcher's --config.section.key)."""
    out = []
    for section, node in config.items():
        if isinstance(node, ml_collections.ConfigDict):
            out += [(section, k) for k, v in node.items()
                    if _value(v) is not None and (section, k) not in FIXED]
    return sorted(out)


# keys that point at data on disk or pick the family / data source: other tests cover them
FIXED = {("model", "name"), ("data", "kind"), ("data", "path"), ("data", "name"),
         ("data", "tfds_name"), ("data", "data_dir"), ("data", "tokenizer")}


@st.composite
def overrides(draw, config):
    leaves = _leaves(config)
    picks = draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=2, unique=True))
    return {f"{s}.{k}": draw(_value(config[s][k])) for s, k in picks}


def _apply(config, values):
    c = ml_collections.ConfigDict(config.to_dict())
    for path, v in values.items():
        section, key = path.split(".")
        c[section][key] = v  # ml_collections keeps the field's type, as --config.x=y does
    return c


def _configs(image_folder=None, sine_folder=None, token_files=None):
    """The `:tiny` config of a family, on data that needs no download (the fixtures)."""
    from experiments.igpt import mnist as igpt
    from experiments.llamagen import fashion_mnist as llamagen
    from experiments.pixelcnn import mnist as pixelcnn
    from experiments.pixelcnnpp import patches
    from experiments.tokenizer import imagenet as tokenizer
    from experiments.var import fashion_mnist as var
    from experiments.wavenet import paper as wavenet

    out = {"pixelcnn": pixelcnn.get_config("tiny"), "igpt": igpt.get_config("tiny"),
           "pixelcnnpp": patches.get_config("tiny"), "tokenizer": tokenizer.get_config("tiny"),
           "wavenet": wavenet.get_config("tiny"), "llamagen": llamagen.get_config("tiny"),
           "var": var.get_config("tiny")}
    for name in ("pixelcnn", "igpt"):
        out[name].data.name = "digits"  # no download
    out["tokenizer"].data.path = image_folder or ""
    out["wavenet"].data.path = sine_folder or ""
    for name in ("llamagen", "var"):
        out[name].data.path = (token_files or {}).get(name, "")
    for c in out.values():
        c.mesh.num_devices = 1  # one device compiles fastest (mesh keys are fuzzed too)
    return out


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from argen_jax.data.synthetic import make_synthetic_folder

    root = str(tmp_path_factory.mktemp("fuzz_images"))
    make_synthetic_folder(root, classes=2, per_class=8, val_per_class=4, min_side=36,
                          max_side=60, photos=("astronaut", "coffee"))
    return root


@pytest.fixture(scope="module")
def sine_folder(tmp_path_factory):
    """Two "speakers", 4 train and 1 test utterance of a sine each (16 kHz WAV files)."""
    import numpy as np

    from argen_jax.data import audio

    root = tmp_path_factory.mktemp("fuzz_audio")
    t = np.arange(4000) / 16000
    for s, freq in enumerate((220.0, 440.0)):
        for split, n in (("train", 4), ("test", 1)):
            for k in range(n):
                x = 0.5 * np.sin(2 * np.pi * freq * (1 + 0.1 * k) * t)
                audio.write_wav(str(root / split / f"spk{s}" / f"{k}.wav"), x, 16000)
    return str(root)


@pytest.fixture(scope="module")
def token_files(tmp_path_factory):
    """A one-step tokenizer run of each kind (single-scale for LlamaGen, multi-scale for VAR)
    and its token file, made the way a user makes them (train, then tokenize_dataset)."""
    from experiments.tokenizer import small
    from experiments.tokenizer import tokenize_dataset as td

    out = {}
    for family, arg in (("llamagen", "tiny"), ("var", "tiny,multiscale")):
        c = small.get_config(arg)
        c.train.num_steps, c.train.sample_at_end, c.train.quiet = 1, False, True
        c.mesh.num_devices = 1
        workdir = str(tmp_path_factory.mktemp(f"fuzz_tok_{family}"))
        run(c, workdir, "train")
        out[family] = os.path.join(workdir, "tokens.npz")
        td.tokenize(workdir, out[family], batch_size=64, full=False)
    return out


def _check(config, workdir):
    try:
        exp = Experiment(config)
    except UserError as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"not one line: {msg!r}"
        with pytest.raises(UserError):
            run(config, workdir, "train")
        assert not os.path.exists(workdir) or not os.listdir(workdir), os.listdir(workdir)
        return "refused"
    batch = exp.device_batch(exp._example)  # the step traces for this model and batch
    jax.eval_shape(meshlib.under_rules(exp.rules, exp._train_step), exp.abstract_state, batch)
    return "built"


@pytest.mark.parametrize("family", ["pixelcnn", "igpt", "pixelcnnpp", "tokenizer", "wavenet"])
def test_random_overrides_build_or_are_refused_in_one_line(family, image_folder, sine_folder,
                                                           tmp_path):
    _property(_configs(image_folder, sine_folder)[family], tmp_path)


@pytest.mark.parametrize("family", ["llamagen", "var"])
def test_random_overrides_of_token_models(family, token_files, tmp_path):
    _property(_configs(token_files=token_files)[family], tmp_path)


def _property(base, tmp_path):
    seen = []

    @settings(max_examples=8, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(values=overrides(base))
    @example(values={})  # the config as written builds
    def prop(values):
        try:
            config = _apply(base, values)
        except (TypeError, ValueError):  # the launcher refuses these while parsing flags
            return
        seen.append(_check(config, str(tmp_path / f"w{len(seen)}")))

    prop()
    assert seen[0] == "built" and "refused" in seen, seen  # both branches were exercised
