"""--mode=eval with config.eval.sample_metrics: per-sample seeds, metrics in metrics.jsonl."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.errors import DataError
from argen_jax.evaluation import feature_net
from argen_jax.evaluation.extract import extract_features
from argen_jax.io.checkpoint import Checkpointer
from argen_jax.train import loop
from argen_jax.train.experiment import Experiment
from argen_jax.train.metrics import read_metrics
from experiments.pixelcnn.mnist import get_config


def _feature_net_file(path, levels=2, size=28):
    model = feature_net.SmallFeatureNet()
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 1)))["params"]
    feature_net.save(path, params, {"levels": levels, "image_shape": [size, size, 1],
                                    "num_classes": 10})


def test_eval_mode_scores_samples_independent_of_batch_size(tmp_path):
    workdir = str(tmp_path / "w")
    net = str(tmp_path / "net.npz")
    _feature_net_file(net, size=8)
    cfg = get_config("tiny")  # tiny binarized (levels 2) Gated PixelCNN
    cfg.data.name = "digits"  # scikit-learn's 8x8 digits: 64 sampling steps instead of 784
    cfg.data.test_limit = 40  # one eval batch: reference set of 40 real images
    cfg.data.eval_batch_size = 40  # divisible by the 8-device data axis
    cfg.eval.sample_metrics = True
    cfg.eval.feature_net = net
    cfg.eval.num_samples = 16
    cfg.eval.sample_batch_size = 8  # two batches of 8 (one per device on the 8-device mesh)
    exp = Experiment(cfg)
    state = exp.init_state()
    ckpt = Checkpointer(workdir)
    ckpt.save(0, state, {"step": 0})
    ckpt.close()

    m = loop.eval_only(cfg, workdir)
    row = read_metrics(workdir)[-1]
    for k in ("fd_smallnet", "precision_smallnet", "recall_smallnet"):
        assert f"eval_samples/{k}" in row and row[f"eval_samples/{k}"] == m[f"eval_samples/{k}"]
    assert row["eval_samples/fd_smallnet"] > 0
    assert 0 <= row["eval_samples/precision_smallnet"] <= 1
    assert "eval/bpd" in row

    # The scored samples are the ones drawn in one batch of 16: sample k's seed is its index.
    saved = np.load(f"{workdir}/samples/eval_0000000.npz")["arr_0"]
    again = exp.sample(exp.eval_params(state), 16, seed=cfg.eval.sample_seed, batch_size=16)
    assert saved.shape == (16, 8, 8, 1)
    np.testing.assert_array_equal(saved, again.astype(np.uint8) * 255)
    assert len(np.unique(saved.reshape(16, -1), axis=0)) == 16  # no seed repeats


def test_feature_net_refuses_other_data(tmp_path):
    net = str(tmp_path / "net.npz")
    _feature_net_file(net, levels=2)
    ext = feature_net.SmallNetExtractor(net)
    with pytest.raises(DataError, match="binarized"):
        ext.check((28, 28, 1), 256)
    with pytest.raises(DataError):
        ext.check((32, 32, 3), 2)


def test_sharded_extraction_pads_and_matches_direct_apply(tmp_path):
    net = str(tmp_path / "net.npz")
    _feature_net_file(net)
    ext = feature_net.SmallNetExtractor(net)
    images = np.random.default_rng(0).integers(0, 2, (13, 28, 28, 1))
    out = extract_features(ext, images, 2, batch_size=8, quiet=True)  # 8 devices, 2 batches
    direct = ext.apply(ext.params, images, 2)
    assert out["pool"].shape == (13, 128)
    np.testing.assert_allclose(out["pool"], np.asarray(direct["pool"]), rtol=1e-5, atol=1e-5)
