"""LlamaGen class-to-image on ImageNet token maps (Sun et al. 2024; its
autoregressive/train/train_c2i.py): GPT-B .. 3B over the 16x16 codes of the VQ-16 tokenizer
(16,384 codes), one class token, 2-D RoPE; AdamW lr 1e-4 constant (no warm-up, no decay),
betas (0.9, 0.95), weight decay 0.05 on the >= 2-D parameters (creat_optimizer), clip 1.0,
global batch 256, 300 epochs (5,004 steps each: its loader drops the last partial batch),
token / residual / FFN dropout 0.1, class dropout 0.1 (for CFG), bf16, no EMA (its README's
commands do not pass --ema); samples with its README's CFG (B, L 2.0; XL, XXL 1.75; 3B 1.65).
docs/recipes.md lists every field with the line it comes from.

Make the token file first, from a tokenizer run of experiments/tokenizer/imagenet.py:
    python -m experiments.tokenizer.tokenize_dataset --workdir=/tmp/tok/imagenet \
        --out=/tmp/tok/imagenet_tokens.npz
    python launch/main.py --config=experiments/llamagen/imagenet.py:XL --workdir=W \
        --config.data.path=/tmp/tok/imagenet_tokens.npz

Arguments (comma-separated, `imagenet.py:L`):
  B, L, XL, XXL, 3B  LlamaGen's model sizes (models/llamagen.py SIZES; default B)
  tp                 tensor parallelism: mesh model=2 (heads and MLP width split)
  tiny               a minute-long CPU run (2 blocks of width 32) on the token file of the
                     tokenizer's `:tiny` run (/tmp/tok/imagenet_tiny_tokens.npz)
The resolution is the tokenizer's: its token maps (256px -> 16x16, 384px -> 24x24) set the
sequence length.
"""
import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.data.tokens import TokenDataSettings
from argen_jax.evaluation.sample_eval import EvalSettings
from argen_jax.models.llamagen import SIZES, LlamaGenSettings
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sections import parallel_config, train_section

IMAGENET_TRAIN = 1_281_167
CFG_SCALE = {"B": 2.0, "L": 2.0, "XL": 1.75, "XXL": 1.75, "3B": 1.65}  # GETTING_STARTED.md


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "tp", *SIZES})
    tiny = "tiny" in args
    sizes = sorted(args & set(SIZES))
    if len(sizes) > 1:
        raise ValueError(f"pick one model size, got {sizes}")
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    # argen_jax/models/llamagen.py LlamaGenSettings: every field, its default and its meaning
    size = sizes[0] if sizes else "B"
    if tiny:
        m = dict(width=32, depth=2, num_heads=2, multiple_of=32, dropout=0.0)
    else:
        m = dict(size=size, dropout=0.1, dtype="bfloat16")
    c.model = section(LlamaGenSettings, name="llamagen", **m)

    batch = 8 if tiny else 256
    c.data = section(TokenDataSettings,
                     path="/tmp/tok/imagenet_tiny_tokens.npz" if tiny
                     else "/tmp/tok/imagenet_tokens.npz",
                     batch_size=batch, eval_batch_size=8 if tiny else 500)

    c.train = train_section(
        num_steps=20 if tiny else 300 * (IMAGENET_TRAIN // batch),
        lr=3e-3 if tiny else 1e-4, schedule="constant", b2=0.95,
        weight_decay=0.0 if tiny else 0.05, decay="matrices", grad_clip=1.0,
        log_every=5 if tiny else 100,
        eval_every=0 if tiny else 50_000, save_every=0 if tiny else 5000,
        tensorboard=not tiny, quiet=tiny)

    # argen_jax/sampling/settings.py SamplingSettings; sample k has class k % classes
    c.sample = section(SamplingSettings, num=6 if tiny else 100,
                       batch_size=6 if tiny else 100,
                       cfg_scale=1.0 if tiny else CFG_SCALE[size])

    # --mode=eval --config.eval.sample_metrics=True: FID / IS of 50k samples (ADM's protocol)
    c.eval = section(EvalSettings, features="inception",
                     inception_weights="~/weights/pt_inception.npz",
                     num_samples=12 if tiny else 50_000, sample_batch_size=12 if tiny else 250)

    rules = [["batch", ["data", "fsdp"]], ["heads", "model"], ["kv_heads", "model"],
             ["mlp", "model"], ["embed", "fsdp"]]  # fsdp: parameters split on their width
    c.mesh, c.sharding = parallel_config(model=2 if "tp" in args else 1, rules=rules)
    return c
