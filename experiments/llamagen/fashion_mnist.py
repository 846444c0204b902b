"""LlamaGen c2i on Fashion-MNIST token maps: 28x28 images -> 8x8 tokens of a 512-code VQ
tokenizer -> class token + 64 next-token predictions with 2-D RoPE; CFG sampling; bits per
token on the test maps; FD / precision / recall of decoded samples (`--mode=eval
--config.eval.sample_metrics=True`).

Make the token file first (a trained tokenizer workdir, experiments/tokenizer/small.py):
    python experiments/tokenizer/tokenize_dataset.py --workdir=/tmp/tok/fm_single \
        --out=/tmp/tok/fashion_mnist_tokens_single.npz

Arguments (comma-separated, `fashion_mnist.py:cpu`):
  tiny               seconds-long smoke run (a 2-block model, 40 steps) for tests
  cpu                the ~15-minute, 2-core CPU run of the LlamaGen report
  B, L, XL, XXL, 3B  LlamaGen's published model shapes (models/llamagen.py SIZES; for
                     accelerators: with 16384 codes they are the ImageNet models' sizes)
  tp                 tensor parallelism: mesh model=2 (heads and MLP width split)
"""
import ml_collections

from argen_jax.config_lib import parallel_config, parse_args, sample_eval_config
from argen_jax.models.llamagen import SIZES


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "cpu", "tp", *SIZES})
    tiny, cpu = "tiny" in args, "cpu" in args
    sizes = sorted(args & set(SIZES))
    if len(sizes) > 1:
        raise ValueError(f"pick one model size, got {sizes}")
    big = bool(sizes)
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    c.model = ml_collections.ConfigDict()
    c.model.name = "llamagen"  # registry name
    c.model.size = sizes[0] if sizes else ""  # LlamaGen shape (B..3B); '' = the fields below
    c.model.width = 32 if tiny else 128 if cpu else 192  # residual stream width (size='' only)
    c.model.depth = 2 if tiny else 4 if cpu else 6  # Llama blocks (size='' only)
    c.model.num_heads = 2 if tiny else 4 if cpu else 6  # query heads (size='' only)
    c.model.num_kv_heads = 0  # grouped KV heads (0: = num_heads; LlamaGen: MHA)
    c.model.head_dim = 0  # 0: width // num_heads
    c.model.mlp_dim = 0  # SwiGLU width; 0: LlamaGen's rule (2/3 * 4 * width, rounded up)
    c.model.multiple_of = 32  # rounding of that rule (LlamaGen: 256; small models: 32)
    c.model.cls_token_num = 1  # class tokens before the map (LlamaGen c2i: 1)
    c.model.prefix_rope = "zero"  # class tokens' RoPE: 'zero' (LlamaGen) | 'identity'
    c.model.rope_theta = 10000.0  # LlamaGen's rope_base
    c.model.norm_eps = 1e-5  # RMSNorm epsilon (LlamaGen)
    c.model.conditional = True  # class-conditional (False: the null class only)
    c.model.label_dropout = 0.1  # training: label -> null class (CFG), LlamaGen's 0.1
    c.model.dropout = 0.0 if tiny or cpu else 0.1  # embeddings + residual branches (LlamaGen
    #   token_dropout_p = resid_dropout_p = ffn_dropout_p = 0.1)
    c.model.token_noise = 0.0  # training: input token -> random code with this prob.
    c.model.dtype = "float32" if tiny or cpu else "bfloat16"  # compute dtype
    c.model.param_dtype = "float32"  # parameter storage dtype

    c.data = ml_collections.ConfigDict()
    c.data.kind = "tokens"  # registry: token maps (argen_jax/data/tokens.py)
    c.data.path = "/tmp/tok/fashion_mnist_tokens_single.npz"  # tokenize_dataset.py output
    c.data.tokenizer = ""  # tokenizer workdir for decoding ('' = the one stored in the file)
    c.data.batch_size = 16 if tiny else 64 if cpu else 256  # global batch
    c.data.eval_batch_size = 64 if tiny else 500
    c.data.train_limit = 0  # first N train maps (0 = all)
    c.data.test_limit = 64 if tiny else 0  # first N test maps (0 = all 10,000)

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 40 if tiny else 400 if cpu else 20000
    c.train.lr = 3e-3 if tiny else 1e-3 if cpu else 3e-4 if big else 1e-3  # peak lr
    #   (LlamaGen: 1e-4 at batch 256 for ImageNet)
    c.train.schedule = "cosine"  # cosine | constant | linear, after linear warm-up
    c.train.warmup_steps = 5 if tiny else 40 if cpu else 500
    c.train.end_lr_fraction = 0.05  # final lr = lr * this
    c.train.weight_decay = 0.05  # AdamW decoupled weight decay (LlamaGen: 0.05)
    c.train.b1 = 0.9  # Adam beta1 (LlamaGen: 0.9)
    c.train.b2 = 0.95  # Adam beta2 (LlamaGen: 0.95)
    c.train.grad_clip = 1.0  # global-norm clipping (LlamaGen: 1.0)
    c.train.ema_decay = 0.0 if tiny else 0.999  # EMA of the weights for eval / sampling
    c.train.log_every = 10 if tiny else 50
    c.train.eval_every = 0 if tiny else 200 if cpu else 2000  # 0: only at the end
    c.train.sample_every = 0  # 0: only at the end
    c.train.sample_at_end = True  # write a per-class sample grid after the last step
    c.train.save_every = 20 if tiny else 100 if cpu else 1000
    c.train.max_to_keep = 3
    c.train.tensorboard = not tiny
    c.train.quiet = False  # no progress bar

    c.sample = ml_collections.ConfigDict()
    c.sample.num = 20 if tiny else 100  # grid: one column per class (sample k: class k % 10)
    c.sample.batch_size = 20 if tiny else 100
    c.sample.seed = 0  # sample k uses fold_in(PRNGKey(seed), k)
    c.sample.temperature = 1.0  # 1.0 samples the model's distribution
    c.sample.top_k = 0  # 0: off
    c.sample.top_p = 1.0  # 1.0: off
    c.sample.cfg_scale = 1.0  # classifier-free guidance (1.0 = off; LlamaGen B: 2.0)
    c.sample.cfg_schedule = "constant"  # constant | linear | cosine ramp from 1 to cfg_scale
    c.sample.cfg_interval = -1  # LlamaGen's: guide tokens t <= N + 1 only (-1: all)

    c.eval = sample_eval_config(num_samples=20 if tiny else 2000,
                                sample_batch_size=20 if tiny else 250,
                                feature_net="/tmp/featnet/fashion_mnist.npz")

    rules = [["batch", ["data", "fsdp"]], ["heads", "model"], ["kv_heads", "model"],
             ["mlp", "model"]]
    c.mesh, c.sharding = parallel_config(model=2 if "tp" in args else 1, rules=rules)
    return c
