"""FID Inception-v3: reference output shapes, the weight loader, preprocessing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.errors import CheckpointError
from argen_jax.evaluation import inception
from experiments.evaluation.convert_pt_inception import convert


@pytest.fixture(scope="module")
def state_dict():
    return _random_state_dict()


def _random_state_dict(seed=0):
    """Weights named and shaped like pytorch-fid's pt_inception state dict."""
    rng = np.random.default_rng(seed)
    sd = {}
    for key, (_, _, shape) in inception.state_dict_keys().items():
        if key.endswith("running_var"):
            sd[key] = rng.uniform(0.5, 1.5, shape)
        elif key.endswith(("running_mean", ".bias")):
            sd[key] = rng.normal(0, 0.1, shape)
        elif key.endswith("bn.weight"):
            sd[key] = rng.uniform(0.8, 1.2, shape)
        else:  # conv [O, I, kh, kw] / fc [1008, 2048]: He-scaled so activations stay O(1)
            sd[key] = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        sd[key] = sd[key].astype(np.float32)
    sd["fc.bias"] = np.zeros(1008, np.float32)  # present in the real file, unused
    sd["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.zeros((), np.int64)
    return sd


def test_reference_shapes_at_299():
    out = jax.eval_shape(lambda: inception.InceptionV3().init_with_output(
        jax.random.PRNGKey(0), jnp.zeros((2, 299, 299, 3)))[0])
    assert out["pool"].shape == (2, 2048)
    assert out["logits"].shape == (2, 1008)
    assert out["spatial"].shape == (2, 17 * 17 * 7)  # mixed_6/conv[..., :7] on the 17x17 grid
    keys = inception.state_dict_keys()
    assert keys["Conv2d_1a_3x3.conv.weight"][2] == (32, 3, 3, 3)
    assert keys["Mixed_6b.branch7x7_2.conv.weight"][2] == (128, 128, 1, 7)
    assert keys["Mixed_7c.branch_pool.conv.weight"][2] == (192, 2048, 1, 1)
    assert keys["fc.weight"][2] == (1008, 2048)
    n = sum(int(np.prod(s)) for k, (_, _, s) in keys.items() if "running" not in k)
    assert 23_000_000 < n < 24_000_000  # ~21.8M conv/bn + 2.06M fc


def test_loader_round_trip_and_forward(tmp_path, state_dict):
    sd = state_dict
    path = str(tmp_path / "inception.npz")
    convert(sd, path)
    variables = inception.load_params(path)
    back = inception.variables_to_state_dict(variables)
    assert set(back) == set(sd) - {"fc.bias", "Conv2d_1a_3x3.bn.num_batches_tracked"}
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k], err_msg=k)

    # The first layer against a direct evaluation in the state dict's [O, I, kh, kw] layout
    # (catches a transposed kernel): conv stride 2, valid -> BN (eps 1e-3) -> ReLU.
    x = np.random.default_rng(1).uniform(-1, 1, (1, 7, 7, 3)).astype(np.float32)
    stem = inception.BasicConv(32, (3, 3), 2)
    got = np.asarray(stem.apply({"params": variables["params"]["Conv2d_1a_3x3"],
                                 "batch_stats": variables["batch_stats"]["Conv2d_1a_3x3"]}, x))
    w = sd["Conv2d_1a_3x3.conv.weight"]
    ref = np.zeros((1, 3, 3, 32), np.float32)
    for i in range(3):
        for j in range(3):
            patch = x[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]  # [kh, kw, I]
            ref[0, i, j] = np.einsum("hwi,oihw->o", patch, w)
    g, b = sd["Conv2d_1a_3x3.bn.weight"], sd["Conv2d_1a_3x3.bn.bias"]
    m, v = sd["Conv2d_1a_3x3.bn.running_mean"], sd["Conv2d_1a_3x3.bn.running_var"]
    ref = np.maximum((ref - m) / np.sqrt(v + 1e-3) * g + b, 0)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)

    # Whole network at the smallest input size it accepts (fast): shapes and finiteness.
    ext = inception.InceptionExtractor(path, size=75)
    images = np.random.default_rng(2).integers(0, 256, (2, 28, 28, 1))
    out = jax.jit(ext.apply)(ext.params, images)
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert out["spatial"].shape == (2, 3 * 3 * 7)
    assert all(np.isfinite(np.asarray(o)).all() for o in out.values())
    assert np.asarray(out["pool"]).min() >= 0  # average of ReLU outputs


def test_loader_rejects_wrong_networks(tmp_path, state_dict):
    sd = dict(state_dict)
    del sd["Mixed_6d.branch1x1.conv.weight"]
    with pytest.raises(CheckpointError, match="lack"):
        inception.state_dict_to_variables(sd)
    sd = dict(state_dict)
    sd["AuxLogits.fc.weight"] = np.zeros((1000, 768), np.float32)  # torchvision's network
    with pytest.raises(CheckpointError, match="unexpected"):
        inception.state_dict_to_variables(sd)
    with pytest.raises(CheckpointError, match="pytorch-fid"):
        inception.load_params(str(tmp_path / "missing.npz"))


def test_resize_modes_and_normalisation():
    x = np.array([0.0, 1.0])
    # TF1 ResizeBilinear (no half-pixel centres): source = dst * in / out
    np.testing.assert_allclose(inception._resize_matrix(2, 4, "tf") @ x, [0, 0.5, 1, 1])
    # PyTorch align_corners=False: source = (dst + 0.5) * in / out - 0.5, clamped at 0
    np.testing.assert_allclose(inception._resize_matrix(2, 4, "pytorch") @ x,
                               [0, 0.25, 0.75, 1])
    img = np.full((1, 5, 7, 1), 255.0)
    out = np.asarray(inception.preprocess(img, size=11, resize="tf"))
    assert out.shape == (1, 11, 11, 3)
    np.testing.assert_allclose(out, 127.0 / 128.0, rtol=1e-6)  # (255 - 128) / 128
    out = np.asarray(inception.preprocess(img * 0, size=11, resize="pytorch"))
    np.testing.assert_allclose(out, -1.0)
