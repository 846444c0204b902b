"""Inception-v3 as used by FID, IS and sFID: the 2015-12-05 TensorFlow graph
(`classify_image_graph_def.pb`, the network of the TTUR FID code and of the ADM / guided-
diffusion evaluator), in the layout of pytorch-fid's port (`FIDInceptionA/C/E_1/E_2`).

Outputs for images [B, H, W, 3]:
    pool     [B, 2048]   pool_3 (global average of Mixed_7c): FID, precision / recall
    logits   [B, 1008]   pool @ fc.kernel (no bias, as the ADM evaluator's softmax): IS
    spatial  [B, 2023]   the first 7 channels of mixed_6/conv (= Mixed_6d.branch1x1, after
                         its ReLU) on the 17x17 grid, flattened (h, w, c): sFID

Differences from torchvision's Inception-v3 that the FID graph has (and we follow):
1008 classes; the average pools inside the blocks do not count the zero padding; the last
block (Mixed_7c) max-pools in its pool branch.

Preprocessing (`preprocess`): images in [0, 255] are resized to 299x299 bilinearly and mapped
to [-1, 1). `resize='tf'` is the graph's own ResizeBilinear (TF1: no half-pixel centres,
source = dst * in / out) followed by (x - 128) / 128, i.e. exactly what the ADM evaluator
computes when it feeds uint8 images into the graph; `resize='pytorch'` is pytorch-fid's
`F.interpolate(..., align_corners=False)` and `2 * x / 255 - 1`.

Weights: pytorch-fid publishes the graph's weights as a PyTorch state dict,
`pt_inception-2015-12-05-6726825d.pth` (github.com/mseitzer/pytorch-fid, release
`fid_weights`). Convert it once with
    python -m experiments.evaluation.convert_pt_inception pt_inception-2015-12-05-6726825d.pth \
        inception_fid.npz
and load the .npz with `load_params` (no PyTorch needed afterwards). The .npz keeps the state
dict's names and layouts (e.g. `Mixed_6d.branch1x1.conv.weight` [O, I, kh, kw]).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util

from argen_jax.errors import CheckpointError, DataError

BN_EPS = 1e-3  # the graph's batch-norm epsilon (pytorch-fid's BasicConv2d uses the same)
NUM_CLASSES = 1008
SPATIAL_CHANNELS = 7  # the ADM evaluator keeps mixed_6/conv[..., :7]


class BasicConv(nn.Module):
    """conv (no bias) -> batch norm (inference statistics) -> ReLU."""

    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: Any = "VALID"  # 'VALID' or 'SAME' (odd kernels: SAME = symmetric padding)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, self.kernel, self.strides, padding=self.padding,
                    use_bias=False, dtype=self.dtype, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=self.dtype,
                         name="bn")(x)
        return nn.relu(x)


def avg_pool_same(x):
    """3x3 / stride 1 average pool that ignores the zero padding (TF 'SAME' average pool)."""
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    s = nn.pool(x, 0.0, jax.lax.add, (3, 3), (1, 1), "SAME")
    n = nn.pool(ones, 0.0, jax.lax.add, (3, 3), (1, 1), "SAME")
    return s / n


class InceptionA(nn.Module):
    pool_features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = lambda f, k, name: BasicConv(f, k, padding="SAME", dtype=self.dtype, name=name)  # noqa: E731
        b1 = c(64, (1, 1), "branch1x1")(x)
        b5 = c(64, (5, 5), "branch5x5_2")(c(48, (1, 1), "branch5x5_1")(x))
        b3 = c(64, (1, 1), "branch3x3dbl_1")(x)
        b3 = c(96, (3, 3), "branch3x3dbl_3")(c(96, (3, 3), "branch3x3dbl_2")(b3))
        bp = c(self.pool_features, (1, 1), "branch_pool")(avg_pool_same(x))
        return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):  # Mixed_6a: grid 35 -> 17
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), 2, dtype=self.dtype, name="branch3x3")(x)
        d = BasicConv(64, (1, 1), dtype=self.dtype, name="branch3x3dbl_1")(x)
        d = BasicConv(96, (3, 3), padding="SAME", dtype=self.dtype, name="branch3x3dbl_2")(d)
        d = BasicConv(96, (3, 3), 2, dtype=self.dtype, name="branch3x3dbl_3")(d)
        bp = nn.max_pool(x, (3, 3), (2, 2))
        return jnp.concatenate([b3, d, bp], -1)


class InceptionC(nn.Module):  # Mixed_6b..6e, factorised 7x7
    channels_7x7: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, return_branch1x1: bool = False):
        c = lambda f, k, name: BasicConv(f, k, padding="SAME", dtype=self.dtype, name=name)  # noqa: E731
        c7 = self.channels_7x7
        b1 = c(192, (1, 1), "branch1x1")(x)
        b7 = c(c7, (1, 1), "branch7x7_1")(x)
        b7 = c(192, (7, 1), "branch7x7_3")(c(c7, (1, 7), "branch7x7_2")(b7))
        d = c(c7, (1, 1), "branch7x7dbl_1")(x)
        d = c(c7, (1, 7), "branch7x7dbl_3")(c(c7, (7, 1), "branch7x7dbl_2")(d))
        d = c(192, (1, 7), "branch7x7dbl_5")(c(c7, (7, 1), "branch7x7dbl_4")(d))
        bp = c(192, (1, 1), "branch_pool")(avg_pool_same(x))
        out = jnp.concatenate([b1, b7, d, bp], -1)
        return (out, b1) if return_branch1x1 else out


class InceptionD(nn.Module):  # Mixed_7a: grid 17 -> 8
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = lambda f, k, s, p, name: BasicConv(f, k, s, p, dtype=self.dtype, name=name)  # noqa: E731
        b3 = c(320, (3, 3), 2, "VALID", "branch3x3_2")(c(192, (1, 1), 1, "VALID",
                                                         "branch3x3_1")(x))
        b7 = c(192, (1, 1), 1, "VALID", "branch7x7x3_1")(x)
        b7 = c(192, (7, 1), 1, "SAME", "branch7x7x3_3")(c(192, (1, 7), 1, "SAME",
                                                          "branch7x7x3_2")(b7))
        b7 = c(192, (3, 3), 2, "VALID", "branch7x7x3_4")(b7)
        bp = nn.max_pool(x, (3, 3), (2, 2))
        return jnp.concatenate([b3, b7, bp], -1)


class InceptionE(nn.Module):  # Mixed_7b (average pool branch), Mixed_7c (max pool branch)
    pool: str = "avg"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = lambda f, k, name: BasicConv(f, k, padding="SAME", dtype=self.dtype, name=name)  # noqa: E731
        b1 = c(320, (1, 1), "branch1x1")(x)
        b3 = c(384, (1, 1), "branch3x3_1")(x)
        b3 = jnp.concatenate([c(384, (1, 3), "branch3x3_2a")(b3),
                              c(384, (3, 1), "branch3x3_2b")(b3)], -1)
        d = c(384, (3, 3), "branch3x3dbl_2")(c(448, (1, 1), "branch3x3dbl_1")(x))
        d = jnp.concatenate([c(384, (1, 3), "branch3x3dbl_3a")(d),
                             c(384, (3, 1), "branch3x3dbl_3b")(d)], -1)
        if self.pool == "max":
            p = nn.max_pool(x, (3, 3), (1, 1), "SAME")
        else:
            p = avg_pool_same(x)
        bp = c(192, (1, 1), "branch_pool")(p)
        return jnp.concatenate([b1, b3, d, bp], -1)


class InceptionV3(nn.Module):
    """The FID Inception-v3 on preprocessed images [B, H, W, 3] in [-1, 1] (H, W >= 75;
    299 for the reference features). Returns {'pool', 'logits', 'spatial'}."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        d = self.dtype
        x = x.astype(d)
        x = BasicConv(32, (3, 3), 2, dtype=d, name="Conv2d_1a_3x3")(x)  # [B, 149, 149, 32]
        x = BasicConv(32, (3, 3), dtype=d, name="Conv2d_2a_3x3")(x)  # [B, 147, 147, 32]
        x = BasicConv(64, (3, 3), padding="SAME", dtype=d, name="Conv2d_2b_3x3")(x)
        x = nn.max_pool(x, (3, 3), (2, 2))  # [B, 73, 73, 64]
        x = BasicConv(80, (1, 1), dtype=d, name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), dtype=d, name="Conv2d_4a_3x3")(x)  # [B, 71, 71, 192]
        x = nn.max_pool(x, (3, 3), (2, 2))  # [B, 35, 35, 192]
        x = InceptionA(32, d, name="Mixed_5b")(x)  # [B, 35, 35, 256]
        x = InceptionA(64, d, name="Mixed_5c")(x)  # 288
        x = InceptionA(64, d, name="Mixed_5d")(x)  # 288
        x = InceptionB(d, name="Mixed_6a")(x)  # [B, 17, 17, 768]
        x = InceptionC(128, d, name="Mixed_6b")(x)
        x = InceptionC(160, d, name="Mixed_6c")(x)
        x, mixed_6_conv = InceptionC(160, d, name="Mixed_6d")(x, return_branch1x1=True)
        x = InceptionC(192, d, name="Mixed_6e")(x)
        x = InceptionD(d, name="Mixed_7a")(x)  # [B, 8, 8, 1280]
        x = InceptionE("avg", d, name="Mixed_7b")(x)  # 2048
        x = InceptionE("max", d, name="Mixed_7c")(x)  # [B, 8, 8, 2048]
        pool = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # [B, 2048]
        kernel = self.param("fc_kernel", nn.initializers.lecun_normal(), (2048, NUM_CLASSES),
                            jnp.float32)
        logits = pool @ kernel  # [B, 1008]
        spatial = mixed_6_conv[..., :SPATIAL_CHANNELS].astype(jnp.float32)
        return {"pool": pool, "logits": logits, "spatial": spatial.reshape(len(x), -1)}


# --------------------------------------------------------------------------- preprocessing
def _resize_matrix(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """[n_out, n_in] bilinear interpolation weights along one axis."""
    scale = n_in / n_out
    dst = np.arange(n_out, dtype=np.float64)
    if mode == "tf":  # TF1 ResizeBilinear(align_corners=False, half_pixel_centers=False)
        src = dst * scale
    elif mode == "pytorch":  # F.interpolate(bilinear, align_corners=False): half-pixel
        src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    else:
        raise DataError(f"resize must be 'tf' or 'pytorch', got {mode!r}")
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m.astype(np.float32)


def preprocess(images, size: int = 299, resize: str = "tf") -> jax.Array:
    """Images [B, H, W, C] with values in [0, 255] (C = 1 is repeated to RGB) -> the network's
    input [B, size, size, 3]: bilinear resize, then to [-1, 1) (see the module docstring)."""
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"Inception expects images [B, H, W, 1 or 3], got {x.shape}")
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    if x.shape[1:3] != (size, size):
        rh = jnp.asarray(_resize_matrix(x.shape[1], size, resize))
        rw = jnp.asarray(_resize_matrix(x.shape[2], size, resize))
        x = jnp.einsum("oh,bhwc,pw->bopc", rh, x, rw, precision="highest")
    if resize == "tf":
        return (x - 128.0) / 128.0
    return x / 127.5 - 1.0


# --------------------------------------------------------------------------- weights
def _state_dict_name(path: tuple[str, ...]) -> tuple[str, str]:
    """flax path -> (state-dict name, collection)."""
    *mods, leaf = path
    name = ".".join(mods)
    if leaf == "fc_kernel":
        return "fc.weight", "params"
    table = {"kernel": ("weight", "params"), "scale": ("weight", "params"),
             "bias": ("bias", "params"), "mean": ("running_mean", "batch_stats"),
             "var": ("running_var", "batch_stats")}
    suffix, col = table[leaf]
    return f"{name}.{suffix}", col


def _to_state_dict_layout(x: np.ndarray, key: str) -> np.ndarray:
    if key == "fc.weight":
        return x.T  # [2048, 1008] -> [1008, 2048]
    if x.ndim == 4:
        return x.transpose(3, 2, 0, 1)  # [kh, kw, I, O] -> [O, I, kh, kw]
    return x


def _from_state_dict_layout(x: np.ndarray, key: str) -> np.ndarray:
    if key == "fc.weight":
        return x.T
    if x.ndim == 4:
        return x.transpose(2, 3, 1, 0)  # [O, I, kh, kw] -> [kh, kw, I, O]
    return x


def abstract_variables(size: int = 299, dtype=jnp.float32):
    """Shapes of {'params', 'batch_stats'} (no computation)."""
    return jax.eval_shape(lambda: InceptionV3(dtype).init(
        jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3), jnp.float32)))


@functools.lru_cache(maxsize=1)
def state_dict_keys() -> dict[str, tuple[tuple[str, ...], str, tuple[int, ...]]]:
    """pytorch-fid state-dict name -> (flax path, collection, state-dict shape)."""
    out = {}
    for col, tree in abstract_variables(75).items():
        for path, leaf in traverse_util.flatten_dict(tree).items():
            key, _ = _state_dict_name(path)
            shape = tuple(_to_state_dict_layout(np.empty(leaf.shape, np.int8), key).shape)
            out[key] = (path, col, shape)
    return out


def variables_to_state_dict(variables) -> dict[str, np.ndarray]:
    """Flax variables -> arrays named and laid out as pytorch-fid's state dict."""
    out = {}
    for tree in variables.values():
        for path, leaf in traverse_util.flatten_dict(jax.device_get(tree)).items():
            key, _ = _state_dict_name(path)
            out[key] = _to_state_dict_layout(np.asarray(leaf, np.float32), key)
    return out


def state_dict_to_variables(sd: dict[str, np.ndarray]) -> dict:
    """pytorch-fid state dict (numpy arrays) -> {'params', 'batch_stats'} for InceptionV3.
    Extra bookkeeping entries (`num_batches_tracked`) are ignored; any missing or misshapen
    weight raises a CheckpointError naming it."""
    keys = state_dict_keys()
    missing = sorted(set(keys) - set(sd))
    if missing:
        raise CheckpointError(f"Inception weights lack {len(missing)} entries, e.g. "
                              f"{missing[:3]} (is this pytorch-fid's FID Inception?)")
    # fc.bias exists in the state dict but IS uses the MatMul alone, as the ADM evaluator does
    ignored = ("num_batches_tracked", "fc.bias")
    unknown = sorted(k for k in set(sd) - set(keys) if not k.endswith(ignored))
    if unknown:
        raise CheckpointError(f"Inception weights have unexpected entries, e.g. {unknown[:3]} "
                              "(torchvision's ImageNet Inception is not the FID network)")
    flat: dict = {"params": {}, "batch_stats": {}}
    for key, (path, col, shape) in keys.items():
        x = np.asarray(sd[key], np.float32)
        if x.shape != shape:
            raise CheckpointError(f"Inception weight {key}: shape {x.shape}, expected {shape}")
        flat[col][path] = jnp.asarray(_from_state_dict_layout(x, key))
    return {col: traverse_util.unflatten_dict(t) for col, t in flat.items()}


def save_npz(path: str, state_dict: dict[str, np.ndarray]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **{k: np.asarray(v, np.float32) for k, v in state_dict.items()
                      if not k.endswith("num_batches_tracked")})


def load_params(path: str) -> dict:
    """Variables of `InceptionV3` from a converted pytorch-fid state dict (.npz)."""
    if not os.path.exists(path):
        raise CheckpointError(
            f"Inception weights not found at {path!r}. Download pytorch-fid's "
            "pt_inception-2015-12-05-6726825d.pth (github.com/mseitzer/pytorch-fid/releases, "
            "tag fid_weights) and convert it with experiments/evaluation/"
            "convert_pt_inception.py.")
    with np.load(path) as f:
        return state_dict_to_variables({k: f[k] for k in f.files})


class InceptionExtractor:
    """uint8-range images [B, H, W, C] -> {'pool', 'logits', 'spatial'}; the interface of
    `extract.extract_features`."""

    suffix = "inception"

    def __init__(self, path_or_variables, size: int = 299, resize: str = "tf",
                 dtype=jnp.float32):
        self.params = (load_params(path_or_variables) if isinstance(path_or_variables, str)
                       else path_or_variables)
        self.model = InceptionV3(dtype)
        self.size, self.resize = size, resize
        tag = path_or_variables if isinstance(path_or_variables, str) else "in-memory"
        self.key = f"inception:{os.path.basename(str(tag))}:{size}:{resize}"

    def check(self, shape: Sequence[int], levels: int) -> None:
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise DataError(f"Inception features need images [H, W, 1 or 3], got {shape}")

    def apply(self, variables, images, levels: int = 256) -> dict:
        """images: integers in [0, levels), rescaled to [0, 255] first."""
        x = jnp.asarray(images, jnp.float32) * (255.0 / max(levels - 1, 1))
        return self.model.apply(variables, preprocess(x, self.size, self.resize))
