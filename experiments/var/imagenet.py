"""VAR (next-scale prediction, Tian et al. 2024) class-conditional on ImageNet 256: the
multi-scale codes (scales 1,2,3,4,5,6,8,10,13,16; 680 tokens; 4,096 codes) of the VQVAE of
`experiments/tokenizer/imagenet.py:var`, tokenized by tokenize_dataset.py.

VAR's recipe: its README's training commands on top of utils/arg_util.py's defaults and
train.py's optimizer (docs/recipes.md lists every field with the line it comes from). AdamW
betas (0.9, 0.95), clip 2.0, lr = tblr * batch / 256 with VAR's 'lin0' schedule (warm-up from
0.005 lr over epochs / 50, the peak for 5% of the rest, then linear to wpe * lr), weight decay
0.05 (d30: a cosine from 0.05 to 0.08) on matrices except the position / level embeddings
(VAR's filter_params), AdaLN gamma init alng; class dropout 0.1; width 64 x depth, heads =
depth; no progressive training (the README's commands leave pg = 0):
  d16  batch 768,  200 epochs, tblr 1e-4, wpe 0.1,  alng 1e-3
  d20  batch 768,  250 epochs, tblr 1e-4, wpe 0.1,  alng 1e-3
  d24  batch 768,  350 epochs, tblr 8e-5, wpe 0.01, alng 1e-4
  d30  batch 1024, 350 epochs, tblr 8e-5, wpe 0.01, alng 1e-5, twde 0.08
Not reproduced: VAR's drop-path (0.1 * depth / 24) and fp16 (ours: bf16).
Sampling: top-k 900, top-p 0.96, CFG ramped linearly over the scales to 2.5 (VAR's cfg=1.5).

    python -m experiments.tokenizer.tokenize_dataset --workdir=/tmp/tok/imagenet_var \
        --out=/tmp/tok/imagenet_var_tokens.npz
    python launch/main.py --config=experiments/var/imagenet.py:d20 --workdir=W \
        --config.data.path=/tmp/tok/imagenet_var_tokens.npz

Arguments (comma-separated): d16 (default) | d20 | d24 | d30, or
  tiny   a minute-long CPU run (depth 2, width 64) on the token file of the tokenizer's
         `:tiny,var` run (/tmp/tok/imagenet_tiny_var_tokens.npz)
The resolution is the tokenizer's (its scales set the token maps).
"""
import dataclasses

import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.data.tokens import TokenDataSettings
from argen_jax.evaluation.sample_eval import EvalSettings
from argen_jax.models.var import VARSettings
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sections import parallel_config, train_section

IMAGENET_TRAIN = 1_281_167


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One of VAR's README training commands (README.md 'Training Scripts')."""

    batch: int  # --bs, global batch
    epochs: int  # --ep
    base_lr: float  # --tblr: lr = tblr * batch / 256
    end_lr_fraction: float  # --wpe: final lr / lr
    ada_gamma_init: float  # --alng
    weight_decay_end: float = 0.05  # --twde (0: = twd, 0.05)


RECIPES = {"d16": Recipe(768, 200, 1e-4, 0.1, 1e-3), "d20": Recipe(768, 250, 1e-4, 0.1, 1e-3),
           "d24": Recipe(768, 350, 8e-5, 0.01, 1e-4),
           "d30": Recipe(1024, 350, 8e-5, 0.01, 1e-5, weight_decay_end=0.08)}
# train.py filter_params' nowd_keys: parameters whose name holds one are not decayed (ours
# named pos_start, pos_embed, lvl_embed match; biases and 1-D leaves are exempt by decay=matrices)
VAR_NO_DECAY = ("cls_token,start_token,task_token,cfg_uncond,pos_embed,pos_1LC,pos_start,"
                "start_pos,lvl_embed,gamma,beta,ada_gss,moe_bias,scale_mul")
WEIGHT_DECAY = 0.05  # --twd (arg_util.py)
WARMUP_START = 0.005  # --wp0 (arg_util.py)


def schedule_steps(batch: int, epochs: int) -> tuple[int, int]:
    """(optimizer steps, warm-up steps) as VAR counts them: iterations per epoch =
    ceil(images / batch) (utils/data_sampler.py), warm-up = round(epochs / 50 * that)."""
    per_epoch = -(-IMAGENET_TRAIN // batch)
    return epochs * per_epoch, round(epochs / 50 * per_epoch)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", *RECIPES})
    tiny = "tiny" in args
    depths = sorted(args & set(RECIPES))
    if len(depths) > 1:
        raise ValueError(f"pick one depth, got {depths}")
    name = depths[0] if depths else "d16"
    r = RECIPES[name]
    num_steps, warmup = schedule_steps(r.batch, r.epochs)
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    # argen_jax/models/var.py VARSettings: every field, its default and its meaning
    if tiny:
        c.model = section(VARSettings, name="var", depth=2, width=64, num_heads=2)
    else:
        c.model = section(VARSettings, name="var", depth=int(name[1:]),
                          ada_gamma_init=r.ada_gamma_init, dtype="bfloat16")

    c.data = section(TokenDataSettings,
                     path="/tmp/tok/imagenet_tiny_var_tokens.npz" if tiny
                     else "/tmp/tok/imagenet_var_tokens.npz",
                     batch_size=8 if tiny else r.batch, eval_batch_size=8 if tiny else 500)

    wd_end = r.weight_decay_end
    c.train = train_section(
        num_steps=20 if tiny else num_steps,
        lr=2e-3 if tiny else r.base_lr * r.batch / 256, schedule="lin0",
        warmup_steps=2 if tiny else warmup, warmup_start_fraction=WARMUP_START,
        end_lr_fraction=r.end_lr_fraction, b2=0.95,
        weight_decay=0.0 if tiny else WEIGHT_DECAY,
        weight_decay_schedule="constant" if tiny or wd_end == WEIGHT_DECAY else "cosine",
        weight_decay_end=0.0 if tiny else wd_end, decay="matrices", no_decay=VAR_NO_DECAY,
        grad_clip=2.0, log_every=5 if tiny else 100, eval_every=0 if tiny else 10_000,
        save_every=0 if tiny else 5000, tensorboard=not tiny, quiet=tiny)

    # argen_jax/sampling/settings.py SamplingSettings; sample k has class k % classes
    c.sample = section(SamplingSettings, num=6 if tiny else 100, batch_size=6 if tiny else 100,
                       top_k=0 if tiny else 900, top_p=1.0 if tiny else 0.96,
                       cfg_scale=1.0 if tiny else 2.5, cfg_schedule="linear")  # VAR's cfg 1.5

    # --mode=eval --config.eval.sample_metrics=True: FID / IS of 50k samples (ADM's protocol)
    c.eval = section(EvalSettings, features="inception",
                     inception_weights="~/weights/pt_inception.npz",
                     num_samples=12 if tiny else 50_000, sample_batch_size=12 if tiny else 250)

    rules = [["batch", ["data", "fsdp"]], ["heads", "model"], ["kv_heads", "model"],
             ["mlp", "model"], ["embed", "fsdp"]]  # fsdp: parameters split on their width
    c.mesh, c.sharding = parallel_config(rules=rules)
    return c
