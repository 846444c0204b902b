"""Read a Hugging Face T5 folder as users download it: config.json, spiece.model and the
weights as `model.safetensors`, sharded `model-*.safetensors` (+ index) or sharded
`pytorch_model-*.bin` (+ index; only these need torch). Only the encoder's tensors (and the
shared embedding) are read, so a full T5 (encoder + decoder) checkpoint works too.
Safetensors are read with the library's numpy API; bfloat16 tensors (which numpy's API
refuses) are read from the file's own header offsets as ml_dtypes.bfloat16."""
from __future__ import annotations

import glob
import json
import os
import struct

import ml_dtypes
import numpy as np

from argen_jax.errors import CheckpointError
from argen_jax.text.t5 import T5Config

_SAFE_DTYPES = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32,
                "F64": np.float64}


def _wanted(name: str) -> bool:
    return name.startswith("encoder.") or name == "shared.weight"


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    out = {}
    try:
        with safe_open(path, framework="np") as f:
            names = [k for k in f.keys() if _wanted(k)]
            for k in names:
                try:
                    out[k] = f.get_tensor(k)
                except TypeError:  # bfloat16: numpy's API has no such dtype
                    out[k] = None
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise CheckpointError(f"cannot read safetensors file {path!r}: {e}") from None
    missing = [k for k, v in out.items() if v is None]
    if missing:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        data = np.memmap(path, np.uint8, "r", offset=8 + n)
        for k in missing:
            info = header[k]
            if info["dtype"] not in _SAFE_DTYPES:
                raise CheckpointError(f"{path!r}: tensor {k!r} has dtype {info['dtype']}")
            a, b = info["data_offsets"]
            out[k] = np.frombuffer(data[a:b], _SAFE_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def _read_bin(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path!r} is a PyTorch file: reading it needs torch "
                              f"(pip install torch==2.13.0), or use model.safetensors") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise CheckpointError(f"cannot read {path!r}: {e}") from None
    out = {}
    for k, v in sd.items():
        if _wanted(k):
            v = v.detach()
            out[k] = (v.float().numpy().astype(ml_dtypes.bfloat16) if v.dtype == torch.bfloat16
                      else v.numpy())
    return out


def weight_files(folder: str) -> list[str]:
    """The folder's weight files, safetensors first (one file, or the shards of an index)."""
    for single, pattern in (("model.safetensors", "model-*-of-*.safetensors"),
                            ("pytorch_model.bin", "pytorch_model-*-of-*.bin")):
        if os.path.isfile(os.path.join(folder, single)):
            return [os.path.join(folder, single)]
        shards = sorted(glob.glob(os.path.join(folder, pattern)))
        if shards:
            return shards
    raise CheckpointError(f"{folder!r} holds no T5 weights (model.safetensors, "
                          f"model-*-of-*.safetensors or pytorch_model-*.bin)")


def read_state_dict(folder: str) -> dict[str, np.ndarray]:
    sd = {}
    for path in weight_files(folder):
        sd.update(_read_safetensors(path) if path.endswith(".safetensors") else _read_bin(path))
    return sd


def _need(sd, key, folder):
    if key not in sd:
        raise CheckpointError(f"T5 folder {folder!r} has no tensor {key!r}")
    return sd[key]


def params_from_state_dict(sd: dict, config: T5Config, folder: str = "") -> dict:
    """Hugging Face encoder tensor names -> our `T5Encoder` parameter tree (numpy, the file's
    dtypes). torch Linear weights are [out, in]; ours are [in, ...out]."""
    c = config
    emb = sd.get("shared.weight", sd.get("encoder.embed_tokens.weight"))
    if emb is None:
        raise CheckpointError(f"T5 folder {folder!r} has no shared.weight")

    def lin(key):
        return np.asarray(_need(sd, key + ".weight", folder)).T

    params = {
        "shared": {"embedding": np.asarray(emb)},
        "relative_attention_bias": np.asarray(_need(
            sd, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", folder)),
        "final_norm": {"scale": np.asarray(_need(sd, "encoder.final_layer_norm.weight", folder))},
    }
    hd = (c.num_heads, c.d_kv)
    for i in range(c.num_layers):
        pre = f"encoder.block.{i}.layer"
        block = {
            "attn_norm": {"scale": np.asarray(_need(sd, f"{pre}.0.layer_norm.weight", folder))},
            "mlp_norm": {"scale": np.asarray(_need(sd, f"{pre}.1.layer_norm.weight", folder))},
            "o": {"kernel": lin(f"{pre}.0.SelfAttention.o").reshape(*hd, c.d_model)},
        }
        for n in "qkv":
            block[n] = {"kernel": lin(f"{pre}.0.SelfAttention.{n}").reshape(c.d_model, *hd)}
        ff = ("wi_0", "wi_1", "wo") if c.feed_forward_proj == "gated-gelu" else ("wi", "wo")
        for n in ff:
            block[n] = {"kernel": lin(f"{pre}.1.DenseReluDense.{n}")}
        params[f"block_{i}"] = block
    return params


def load(folder: str) -> tuple[T5Config, dict]:
    """(config, numpy parameter tree) of a Hugging Face T5 folder."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"--t5={folder!r} is not a directory")
    config = T5Config.from_folder(folder)
    return config, params_from_state_dict(read_state_dict(folder), config, folder)
