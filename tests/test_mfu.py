"""Model FLOPs (models/flops.py) against XLA's count, the throughput / MFU fields of the
training log (train/mfu.py) and the optimizer details of the papers (train/optim.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from argen_jax.config_lib import typed
from argen_jax.errors import ConfigError
from argen_jax.models.flops import decoder_forward_flops, var_forward_flops
from argen_jax.models.transformer import Decoder
from argen_jax.models.var import VARTransformer
from argen_jax.train import optim
from argen_jax.train.mfu import Throughput, peak_tflops
from argen_jax.train.settings import TrainSettings

B = 2


def _xla_flops(fn, *args) -> float:
    return jax.jit(fn).lower(*args).cost_analysis()["flops"]


def _check(apply, params, analytic_forward):
    """Forward within 3% of XLA's count, the gradient within 3% of 3x (matmuls dominate at
    these widths; the rest are norms, softmax and element-wise ops)."""
    fwd = _xla_flops(apply, params)
    grad = _xla_flops(jax.grad(lambda p: apply(p).sum()), params)
    assert fwd == pytest.approx(analytic_forward, rel=0.03)
    assert grad == pytest.approx(3 * analytic_forward, rel=0.03)


def test_decoder_flops_match_xla():
    t = 48
    m = Decoder(vocab_size=64, max_len=t, width=128, depth=2, num_heads=4, num_kv_heads=2,
                mlp_dim=384)
    ids = jnp.zeros((B, t), jnp.int32)
    params = nn.unbox(m.init(jax.random.PRNGKey(0), ids))
    _check(lambda p: m.apply(p, ids)[0], params, B * decoder_forward_flops(m, t))


def test_var_flops_match_xla():
    m = VARTransformer(vocab_size=64, code_dim=8, num_classes=10, patch_nums=(1, 2, 4, 6),
                       width=128, depth=2, num_heads=4)
    labels, x = jnp.zeros((B,), jnp.int32), jnp.zeros((B, m.seq_len - 1, 8))
    params = nn.unbox(m.init(jax.random.PRNGKey(0), labels, x))
    _check(lambda p: m.apply(p, labels, x), params, B * var_forward_flops(m))


def test_peak_table_and_mfu_fields():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("TPU v5 lite") == 197.0
    assert peak_tflops("cpu") is None and peak_tflops("cpu", 2.0) == 2.0
    m = Throughput(3e12, 8, 256, 100.0, 4).metrics(2.0)
    assert m["train/examples_per_sec"] == 16 and m["train/tokens_per_sec"] == 16 * 256
    assert m["train/model_tflops_per_sec"] == pytest.approx(6.0)
    assert m["train/mfu"] == pytest.approx(6.0 / 400.0)
    assert "train/mfu" not in Throughput(3e12, 8, None, None, 4).metrics(2.0)


def _settings(**kw):
    return typed(TrainSettings, {"num_steps": 10, "lr": 0.1, **kw}, "train")


def test_weight_decay_on_matrices_only():
    params = {"kernel": jnp.ones((3, 4)), "bias": jnp.ones((4,)), "scale": jnp.ones((4,))}
    zeros = jax.tree.map(jnp.zeros_like, params)
    for decay, bias_moves in (("matrices", False), ("all", True)):
        tx = optim.adamw(_settings(weight_decay=0.5, decay=decay), optax.constant_schedule(0.1))
        updates, _ = tx.update(zeros, tx.init(params), params)
        assert np.all(np.asarray(updates["kernel"]) < 0)  # decayed towards zero
        assert np.any(np.asarray(updates["bias"]) != 0) == bias_moves
        assert np.any(np.asarray(updates["scale"]) != 0) == bias_moves


def test_bf16_first_moment():
    params = {"kernel": jnp.ones((3, 4))}
    tx = optim.adamw(_settings(mu_dtype="bfloat16"), optax.constant_schedule(0.1))
    dtypes = {x.dtype for x in jax.tree.leaves(tx.init(params)) if x.ndim}
    assert dtypes == {jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)}  # mu bf16, nu f32
    with pytest.raises(ConfigError, match="train.mu_dtype"):
        _settings(mu_dtype="float8")
    with pytest.raises(ConfigError, match="train.decay"):
        _settings(decay="vectors")
