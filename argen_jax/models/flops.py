"""Analytic model FLOPs of the transformer families, for throughput and MFU in the metrics.

Conventions (PaLM's "model FLOPs", as MaxText reports them): a matmul of [m, k] by [k, n] is
2 m k n FLOPs; only matmuls count (norms, softmax, RoPE and the optimizer are a few percent
at real sizes); attention counts the full T x T score and value products (what the einsum and
the fused kernels compute, masked entries included); a training step is 3x the forward pass
(the backward pass computes two matmuls per forward one). Rematerialisation recomputes the
forward pass but does not change model FLOPs (that is the point of MFU: it measures useful
work). `tests/test_mfu.py` checks these counts against XLA's `cost_analysis()`.
"""
from __future__ import annotations

TRAIN_MULTIPLIER = 3  # forward + backward (two matmuls per forward matmul)


def attention_flops(seq: int, width: int, q_dim: int, kv_dim: int, keys: int | None = None,
                    out_dim: int | None = None) -> float:
    """One attention layer on `seq` queries over `keys` keys (default: seq): the Q, K, V and
    output projections and the scores / values products. q_dim = heads * head_dim, kv_dim =
    kv_heads * head_dim."""
    keys = seq if keys is None else keys
    proj = 2 * seq * width * (q_dim + 2 * kv_dim) + 2 * seq * q_dim * (out_dim or width)
    return proj + 2 * 2 * seq * keys * q_dim  # q k^T and p v


def decoder_forward_flops(model, seq: int) -> float:
    """`models.transformer.Decoder` on one sequence of `seq` tokens: Llama blocks (attention +
    SwiGLU's three matmuls) and the output head over the vocabulary."""
    hd = model.head_dim or model.width // model.num_heads
    kv = model.num_kv_heads or model.num_heads
    block = (attention_flops(seq, model.width, model.num_heads * hd, kv * hd)
             + 3 * 2 * seq * model.width * model.mlp_dim)
    return model.depth * block + 2 * seq * model.width * model.vocab_size


def var_forward_flops(model) -> float:
    """`models.var.VARTransformer` on one example (all scales, L tokens): the word embedding
    of the teacher-forcing inputs, AdaLN blocks (the condition's 6-way modulation, attention,
    the GELU MLP), the head's AdaLN modulation and the head."""
    seq, e = model.seq_len, model.width
    hidden = round(e * model.mlp_ratio)
    first = model.patch_nums[0] ** 2
    embed = 2 * (seq - first) * model.code_dim * e
    block = 2 * e * 6 * e + attention_flops(seq, e, e, e) + 2 * 2 * seq * e * hidden
    head = 2 * e * 2 * e + 2 * seq * e * model.vocab_size
    return embed + model.depth * block + head
