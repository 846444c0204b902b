"""SamplingSettings (the typed `config.sample`), the one CFG wrapper, class labels, and the typed
`config.model` settings of the transformer families."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from argen_jax.config_lib import section, typed
from argen_jax.errors import ConfigError
from argen_jax.models.igpt import IGPTSettings
from argen_jax.models.labels import ClassLabels, LabelSettings
from argen_jax.models.llamagen import SIZES, LlamaGenSettings, ffn_dim, llamagen_decoder
from argen_jax.models.var import VARSettings
from argen_jax.sampling.processors import cfg_combine, guided_step_fn
from argen_jax.sampling.settings import SamplingSettings
from experiments.igpt import mnist
from experiments.llamagen import fashion_mnist as llamagen_cfg
from experiments.var import fashion_mnist as var_cfg


def _config(**sample):
    c = ml_collections.ConfigDict()
    if sample:
        c.sample = ml_collections.ConfigDict(sample)
    return c


def test_sampling_settings_defaults_and_family_defaults():
    s = SamplingSettings.from_config(_config())
    assert (s.num, s.seed, s.batch_size, s.samples_per_call) == (16, 0, 0, 16)
    assert (s.temperature, s.top_k, s.top_p, s.cfg_scale) == (1.0, 0, 1.0, 1.0)
    assert s.cfg_schedule == "constant" and s.cfg_interval == -1 and s.length == 0
    # a family default applies when the section does not hold the key, the config wins
    assert SamplingSettings.from_config(_config(num=4), cfg_schedule="linear").cfg_schedule \
        == "linear"
    s = SamplingSettings.from_config(_config(cfg_schedule="cosine", batch_size=8),
                                     cfg_schedule="linear")
    assert s.cfg_schedule == "cosine" and s.samples_per_call == 8
    # every experiment's sample section holds every key (section), with its old values
    c = var_cfg.get_config("tiny")
    assert SamplingSettings.from_config(c, cfg_schedule="linear") == SamplingSettings(
        num=20, batch_size=20, cfg_scale=3.0, cfg_schedule="linear")
    assert set(c.sample) == set(SamplingSettings.__dataclass_fields__)


@pytest.mark.parametrize("bad, key", [
    (dict(temperature=0.0), "sample.temperature"), (dict(top_p=1.5), "sample.top_p"),
    (dict(top_k=-1), "sample.top_k"), (dict(cfg_schedule="exp"), "sample.cfg_schedule"),
    (dict(num=-1), "sample.num"), (dict(cfg_interval=-2), "sample.cfg_interval"),
    (dict(top_kk=3), "sample.top_kk"), (dict(top_k="3x"), "sample.top_k"),
    (dict(kv_cache_dtype="float8"), "sample.kv_cache_dtype")])
def test_sampling_settings_reject_bad_values(bad, key):
    with pytest.raises(ConfigError, match=key):
        SamplingSettings.from_config(_config(**bad))
    with pytest.raises(ConfigError):
        section(SamplingSettings, **bad)


def test_guided_step_fn_combines_the_halves():
    def step(seq, cache, t):  # the model's outputs on the doubled batch [2B, V]
        return jnp.concatenate([seq + 1.0, seq - 1.0]).astype(jnp.bfloat16), cache + 1

    seq = jnp.array([[0.0, 2.0], [1.0, 3.0]])
    guided = guided_step_fn(step, lambda t: 1.0 + t)
    out, cache = guided(seq, 0, 2)
    assert out.dtype == jnp.float32 and int(cache) == 1
    np.testing.assert_allclose(out, cfg_combine(seq + 1.0, seq - 1.0, 3.0))
    settings = SamplingSettings(cfg_scale=2.0, cfg_interval=0)
    out, _ = settings.guide(step, 4)(seq, 0, 2)  # t = 2 > cfg_interval + 1: conditional
    np.testing.assert_allclose(out, seq + 1.0)


def test_class_labels():
    cond = ClassLabels.of(LabelSettings(True, 1.0), 10)
    assert cond.conditional and cond.null_class == 10
    labels = jnp.array([1, 2, 3])
    np.testing.assert_array_equal(cond.train(labels, 3), labels)
    np.testing.assert_array_equal(cond.train(labels, 3, jax.random.PRNGKey(0), True), [10] * 3)
    lab, null = cond.for_sampling(labels, 3, guided=True)
    np.testing.assert_array_equal(null, [10] * 3)
    assert cond.for_sampling(labels, 3, guided=False)[1] is None
    uncond = ClassLabels.of(LabelSettings(False, 0.1), 10)
    assert uncond.null_class == 0
    lab, null = uncond.for_sampling(labels, 3, guided=True)
    np.testing.assert_array_equal(lab, [0, 0, 0])
    assert null is None
    assert ClassLabels.of(LabelSettings(), 0).conditional is False  # data without classes


def test_model_settings_defaults_and_validation():
    assert IGPTSettings().rope == "1d" and not IGPTSettings().conditional
    lg = LlamaGenSettings()
    assert (lg.norm_eps, lg.prefix_rope, lg.multiple_of, lg.label_dropout) == (1e-5, "zero",
                                                                               256, 0.1)
    d = llamagen_decoder({"size": "B"}, 16384, 1000, (16, 16))
    depth, heads, width = SIZES["B"]
    assert (d.depth, d.num_heads, d.width, d.mlp_dim) == (depth, heads, width, ffn_dim(width))
    assert d.max_len == 256 and d.num_prefix == 1 and d.prefix_rope == "zero"
    v = VARSettings(depth=4).transformer(512, 8, 10, (1, 2, 4))
    assert (v.width, v.num_heads, v.mlp_ratio) == (256, 4, 4.0)
    for cls, bad, key in [(LlamaGenSettings, dict(size="XS"), "model.size"),
                          (LlamaGenSettings, dict(prefix_rope="one"), "model.prefix_rope"),
                          (LlamaGenSettings, dict(cls_token_num=0), "model.cls_token_num"),
                          (IGPTSettings, dict(rope="3d"), "model.rope"),
                          (IGPTSettings, dict(dtype="float31"), "model.dtype"),
                          (IGPTSettings, dict(num_heads=4, num_kv_heads=3), "model.num_heads"),
                          (VARSettings, dict(depth=0), "model.depth"),
                          (VARSettings, dict(label_dropout=2.0), "model.label_dropout")]:
        with pytest.raises(ConfigError, match=key):
            cls(**bad)
    for get_config, cls in ((mnist.get_config, IGPTSettings),
                            (llamagen_cfg.get_config, LlamaGenSettings),
                            (var_cfg.get_config, VARSettings)):
        c = get_config("tiny")
        assert set(c.model) == set(cls.__dataclass_fields__) | {"name"}  # every key listed
        typed(cls, c.model, "model", ignore=("name",))
        c.model.widht = 3
        with pytest.raises(ConfigError, match="model.widht"):
            typed(cls, c.model, "model", ignore=("name",))


def test_mixture_heads_take_the_temperature_and_refuse_logit_filters():
    assert SamplingSettings(temperature=0.7).temperature_only("a mixture") == 0.7
    for bad in (dict(top_k=5), dict(top_p=0.9)):
        with pytest.raises(ConfigError, match=f"sample.{next(iter(bad))}=.*a mixture has no"):
            SamplingSettings(**bad).temperature_only("a mixture")


def test_grid_classes_are_readable_for_many_class_models():
    s = SamplingSettings()
    assert s.grid_classes(0) == () and s.grid_classes(10) == tuple(range(10))
    assert s.grid_classes(1000) == (0, 143, 285, 428, 571, 714, 856, 999)  # 8, spread
    assert SamplingSettings(classes="207, 360,387").grid_classes(1000) == (207, 360, 387)
    with pytest.raises(ConfigError, match="the model has 10 classes"):
        SamplingSettings(classes="3,12").grid_classes(10)
    for bad in ("cat", "1,-2"):
        with pytest.raises(ConfigError, match="sample.classes must be class ids"):
            SamplingSettings(classes=bad)
