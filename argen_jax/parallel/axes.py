"""Logical axis names: the only vocabulary modules use to describe how tensors shard.

Every parameter and large activation is annotated with these names
(`nn.with_logical_partitioning(init, (EMBED, MLP))`); the config's `sharding.rules` maps
them to mesh axes. Nothing outside `argen_jax/parallel/` names a mesh axis. The model width
has two names, as MaxText's `embed` / `activation_embed`: `EMBED` on parameters (split over
`fsdp` by FSDP) and `ACT_EMBED` on activations (replicated unless a rule names it).
"""

# Activations.
BATCH = "batch"
LENGTH = "length"  # sequence / time axis
HEIGHT = "height"
WIDTH = "width"
ACT_EMBED = "activation_embed"  # model width of activations (the residual stream)
# Parameters / features.
EMBED = "embed"  # model width of parameters
MLP = "mlp"  # hidden width of feed-forward blocks
HEADS = "heads"  # attention heads (query)
KV_HEADS = "kv_heads"  # attention heads (keys / values)
HEAD_DIM = "head_dim"
VOCAB = "vocab"  # output classes / codebook entries
CLASSES = "classes"  # class-embedding table rows
TAPS = "taps"  # conv taps (kernel positions)
CONV_IN = "conv_in"  # conv input channels
CONV_OUT = "conv_out"  # conv output channels
CODE_DIM = "code_dim"
LAYERS = "layers"  # the leading axis of scanned blocks' parameters (`layers/repeat.py`)

RESIDUAL = (BATCH, LENGTH, ACT_EMBED)  # a transformer's residual stream [B, T, E]

# Mesh axes.
DATA_AXIS = "data"
MODEL_AXIS = "model"
FSDP_AXIS = "fsdp"

# Default rules: data parallelism for the batch (over data x fsdp), tensor parallelism over
# heads and the MLP hidden width, and FSDP (ZeRO-3): parameters' model-width axis (`embed`)
# split over `fsdp`, gathered by XLA where used. Activations' width (`activation_embed`) has no
# rule: it stays unsplit (`batch` already took `fsdp`). With mesh.fsdp = 1 the embed rule is a
# no-op. `layers` (scanned blocks' depth axis) is never split (a name no rule maps is
# unsplit too). Override per experiment in `config.sharding.rules`.
DEFAULT_RULES = (
    (BATCH, (DATA_AXIS, FSDP_AXIS)),
    (HEADS, MODEL_AXIS),
    (KV_HEADS, MODEL_AXIS),
    (MLP, MODEL_AXIS),
    (VOCAB, MODEL_AXIS),
    (EMBED, FSDP_AXIS),
    (LAYERS, None),  # scanned layers: every device holds its slice of every layer
)
