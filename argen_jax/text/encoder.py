"""A frozen T5 encoder on the mesh: prompts -> LlamaGen's caption features.

`TextEncoder(folder)` loads a Hugging Face T5 folder, places the parameters by their logical
names (`config.sharding.rules`, default FSDP over `fsdp` and tensor parallelism over
`model`), and `features(texts)` returns what LlamaGen's `T5Embedder.get_text_embeddings`
does: the last hidden state [N, L, D] (padding rows included, as Hugging Face computes them)
and the mask [N, L], right-padded. Batches are split over the data axes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax.errors import ConfigError
from argen_jax.parallel import axes
from argen_jax.parallel import mesh as mesh_lib
from argen_jax.text import hf_folder
from argen_jax.text.t5 import T5Config, T5Encoder, abstract_params
from argen_jax.text.tokenizer import MAX_LENGTH, T5Tokenizer

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def place_params(np_params, config: T5Config, mesh, rules, dtype=jnp.float32):
    """A numpy parameter tree -> jax arrays sharded by their logical names, cast to dtype
    (each process reads only its devices' slices: `make_array_from_callback`)."""
    shardings = mesh_lib.logical_shardings(abstract_params(config, dtype), mesh, rules)

    def put(a, s):
        return jax.make_array_from_callback(np.shape(a), s,
                                            lambda idx: np.asarray(a[idx]).astype(dtype))

    return jax.tree.map(put, np_params, shardings)


class TextEncoder:
    """Prompts -> (emb [N, L, D] float32, mask [N, L] int32), jitted over the mesh."""

    def __init__(self, folder: str, dtype: str = "float32", mesh=None, rules=None,
                 max_length: int = MAX_LENGTH, clean: bool = True):
        if dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.config, np_params = hf_folder.load(folder)
        self.tokenizer = T5Tokenizer(folder, max_length, clean)
        self.mesh = mesh if mesh is not None else mesh_lib.create_mesh()
        self.rules = rules if rules is not None else axes.DEFAULT_RULES
        self.dtype = DTYPES[dtype]
        self.params = place_params(np_params, self.config, self.mesh, self.rules, self.dtype)
        model = T5Encoder(self.config, dtype=self.dtype, param_dtype=self.dtype)
        batch = mesh_lib.batch_sharding(self.mesh)
        self._encode = jax.jit(
            lambda p, ids, m: model.apply({"params": p}, ids, m).astype(jnp.float32),
            out_shardings=batch)
        self._batch = batch

    @property
    def width(self) -> int:
        return self.config.d_model

    def encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """ids / mask [N, L] -> float32 [N, L, D]; N is padded to the data-parallel size."""
        n, per = len(ids), mesh_lib.data_parallel_size(self.mesh)
        pad = -n % per
        ids_p = np.concatenate([ids, np.zeros((pad, ids.shape[1]), ids.dtype)])
        mask_p = np.concatenate([mask, np.ones((pad, mask.shape[1]), mask.dtype)])
        ids_d, mask_d = (jax.make_array_from_callback(a.shape, self._batch, lambda i, a=a: a[i])
                         for a in (ids_p, mask_p))
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            out = self._encode(self.params, ids_d, mask_d)
        return mesh_lib.to_host(out)[:n]

    def features(self, texts, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """LlamaGen's `get_text_embeddings` for a list of prompts, `batch_size` at a time."""
        embs, masks = [], []
        for start in range(0, len(texts), batch_size):
            ids, mask = self.tokenizer(texts[start:start + batch_size])
            embs.append(self.encode(ids, mask))
            masks.append(mask)
        if not embs:
            return (np.zeros((0, self.tokenizer.max_length, self.width), np.float32),
                    np.zeros((0, self.tokenizer.max_length), np.int32))
        return np.concatenate(embs), np.concatenate(masks)
