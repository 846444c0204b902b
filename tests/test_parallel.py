"""Data x tensor parallelism, checkpoints across mesh shapes, and multi-process training."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P
from PIL import Image

from argen_jax.heads.categorical import categorical_nll
from argen_jax.io.checkpoint import Checkpointer
from argen_jax.models.transformer import Decoder
from argen_jax.parallel import axes
from argen_jax.parallel import mesh as meshlib
from argen_jax.train.experiment import Experiment
from experiments.igpt.mnist import get_config
from tests.model_utils import random_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("data,fsdp,tp", [(2, 1, 4), (2, 2, 2)])
def test_sharded_matches_unsharded(data, fsdp, tp):
    """Heads, KV heads, MLP width and vocab split over `model`, batch over data x fsdp, and
    (fsdp > 1) every parameter's width axis over `fsdp`: same loss and grads."""
    model = Decoder(vocab_size=16, num_classes=3, max_len=8, width=16, depth=2, num_heads=4,
                    num_kv_heads=4, mlp_dim=32)
    ids = jax.random.randint(jax.random.PRNGKey(1), (4, 8), 0, 19)
    params = random_params(model, ids)["params"]

    def loss(params, ids):
        logits, _ = model.apply({"params": params}, ids)
        return categorical_nll(logits[:, :-1], jnp.minimum(ids[:, 1:], 15)).mean()

    ref_loss, ref_grads = jax.jit(jax.value_and_grad(loss))(params, ids)

    mesh = meshlib.create_mesh(data=data, model=tp, fsdp=fsdp)
    rules = axes.DEFAULT_RULES
    specs = nn.get_partition_spec(jax.eval_shape(model.init, jax.random.PRNGKey(0), ids))
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)["params"]
    batch = meshlib.batch_sharding(mesh)

    def new_cache():
        with nn.logical_axis_rules(rules):
            return model.init_cache(4)

    def sharded_loss(params, ids):
        with nn.logical_axis_rules(rules):
            return jax.value_and_grad(loss)(params, ids)

    f = jax.jit(sharded_loss, in_shardings=(shardings, batch),
                out_shardings=(meshlib.replicated(mesh), shardings))
    with jax.set_mesh(mesh):
        p_sh, ids_sh = jax.device_put(params, shardings), jax.device_put(ids, batch)
        out_loss, grads = f(p_sh, ids_sh)
        hlo = f.lower(p_sh, ids_sh).as_text()
        cache = jax.jit(new_cache)()
    np.testing.assert_allclose(out_loss, ref_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4),
                 grads, ref_grads)
    gate = grads["block_0"]["mlp"]["gate"]["kernel"]  # [embed 16, mlp 32]
    assert gate.sharding.spec == P("fsdp", "model")  # a size-1 fsdp axis splits nothing
    assert len(gate.addressable_shards) == 8
    assert gate.addressable_shards[0].data.shape == (16 // fsdp, 32 // tp)  # really split
    assert "sharding_constraint" in hlo  # activation annotations are live under the rules
    k_spec = cache[0].k.sharding.spec  # the KV cache: batch over data, kv heads over model
    batch_axes = ("data", "fsdp") if fsdp > 1 else "data"  # jit drops size-1 mesh axes
    assert tuple(k_spec)[:3] == (batch_axes, None, "model"), k_spec


def _tiny_config(**mesh):
    c = get_config("tiny")
    c.data.name = "digits"  # 8x8 digits: 64 tokens, and it loads in milliseconds
    c.model.num_kv_heads = 2  # 4 query heads, 2 KV heads: both split over model=2
    c.data.test_limit, c.data.eval_batch_size = 32, 16
    c.train.tensorboard, c.train.sample_at_end = False, False
    for k, v in mesh.items():
        c.mesh[k] = v
    return c


def test_checkpoint_restores_onto_another_mesh(tmp_path):
    """Saved from data=8 (replicated params), restored onto data=2 x fsdp=2 x model=2 (heads
    split over model, the width axis over fsdp)."""
    exp8 = Experiment(_tiny_config(data=8, model=1))
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda a: jax.device_put(
        rng.normal(size=a.shape).astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.floating)
        else np.zeros(a.shape, a.dtype), a.sharding), exp8.abstract_state)
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(7, state, {"step": 7})
    ckpt.close()

    exp42 = Experiment(_tiny_config(data=2, fsdp=2, model=2))
    ckpt = Checkpointer(str(tmp_path))
    restored, meta = ckpt.restore(exp42.abstract_state)
    ckpt.close()
    assert meta["step"] == 7
    jax.tree.map(np.testing.assert_array_equal, restored, state)
    q = restored.params["block_0"]["attn"]["query"]
    assert q.sharding.spec == P("fsdp", "model", None) and q.sharding.mesh.shape["model"] == 2
    assert q.addressable_shards[0].data.shape[:2] == (q.shape[0] // 2, q.shape[1] // 2)


def _last(workdir, key):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [r[key] for r in rows if key in r][-1]


def test_two_processes_train_like_one(tmp_path):
    """launch/local_multiprocess.sh: 2 processes x 4 CPU devices (jax.distributed, gloo)
    give the same losses and the same samples as this process with its 8 devices, on a
    data=4 x model=2 mesh."""
    flags = ["--config=experiments/igpt/mnist.py:tiny", "--config.train.num_steps=3",
             "--config.train.log_every=1", "--config.train.sample_at_end=True",
             "--config.sample.num=8", "--config.sample.batch_size=8",
             "--config.train.tensorboard=False", "--config.train.quiet=True",
             "--config.data.test_limit=32", "--config.data.eval_batch_size=16",
             "--config.model.num_kv_heads=2", "--config.mesh.model=2",
             "--config.data.name=digits"]
    mp_dir = tmp_path / "mp"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.Popen(
        ["bash", os.path.join(ROOT, "launch/local_multiprocess.sh"), "2", "4", str(mp_dir),
         "--", *flags, f"--workdir={mp_dir / 'w'}"],
        cwd=ROOT, env={**env, "PYTHON": sys.executable}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)

    from argen_jax.train import loop  # meanwhile: the same run in this 8-device process

    config = _tiny_config(model=2)
    config.train.num_steps, config.train.log_every, config.train.quiet = 3, 1, True
    config.train.sample_at_end, config.sample.num, config.sample.batch_size = True, 8, 8
    loop.train(config, str(tmp_path / "single"))
    out, _ = proc.communicate(timeout=300)
    logs = "".join(open(mp_dir / f"process_{i}.log").read()[-2000:] for i in range(2))
    assert proc.returncode == 0, out + logs
    assert "process 1 of 2, 4 local / 8 global devices" in logs, logs
    for key in ("train/loss", "eval/nll"):
        np.testing.assert_allclose(_last(mp_dir / "w", key), _last(tmp_path / "single", key),
                                   rtol=2e-5, err_msg=key)
    # each process holds only its devices' rows of the sample batch: they are gathered
    grids = [np.asarray(Image.open(d / "samples" / "step_0000003.png"))
             for d in (mp_dir / "w", tmp_path / "single")]
    np.testing.assert_array_equal(*grids)
