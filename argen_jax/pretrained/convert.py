"""Released LlamaGen / VAR files -> an argen_jax run directory.

    RUN/config.json, data_spec.json     the model run (data.kind='token_spec': the token spec
                                        of the released model, no data), its sampling preset
    RUN/checkpoints/0/                  a TrainState (step 0, AdamW moments zero) as training
                                        writes it: `launch/main.py --mode=sample` restores it
    RUN/tokenizer/                      the tokenizer as a run of its own (config.json,
                                        data_spec.json, checkpoints/0 holding only `params`):
                                        what `Tokenizer.load` / `registry.build_family` read

Every shape is read from the state dicts: layers, width, vocabulary, classes, MLP width, KV
heads, VAR's depth, MLP ratio and patch numbers, the tokenizers' channels, levels, blocks and
codes. The head count is not in a state dict: it comes from the papers' size tables by the
inferred shape (or `size=`), or `heads=` for a custom shape; every disagreement is a one-line
`CheckpointError` naming the key and the likely cause. LlamaGen's c2i GPT has one class token
(not visible in the weights either). Nothing is written until every file has converted.
"""
from __future__ import annotations

import os
import re
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from argen_jax.config_lib import section
from argen_jax.data.pipeline import DataSpec
from argen_jax.data.tokens import TokenSpecSettings
from argen_jax.errors import CheckpointError, ConfigError
from argen_jax.evaluation.sample_eval import EvalSettings
from argen_jax.io.checkpoint import Checkpointer
from argen_jax.io.run_dir import save_config, save_spec
from argen_jax.layers.repeat import stack_layers
from argen_jax.layers.vq_nets import ImageSpace
from argen_jax.models.llamagen import SIZES, LlamaGenSettings, ffn_dim
from argen_jax.models.var import VARSettings, tokenizer_subtree
from argen_jax.models.vqgan import LLAMAGEN_LAYOUT, VAR_LAYOUT, VAR_QUANTIZER, VQGANSettings
from argen_jax.pretrained import torch_llamagen, torch_llamagen_vq, torch_var, torch_var_vq
from argen_jax.pretrained.presets import preset
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sections import parallel_config, train_section
from argen_jax.train.experiment import Experiment
from argen_jax.train.state import TrainState

TORCH_HINT = "pip install -e '.[convert]'"
TOKENIZER_DIR = "tokenizer"
# VAR's patch numbers by image size (VAR's models/__init__.py): (scales, tokens) identify them
VAR_PATCH_NUMS = {256: (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),
                  512: (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)}


# ----------------------------------------------------------------------------- reading
def read_state_dict(path: str, flag: str) -> dict:
    """{key: array} of a `.pt` / `.pth` (torch, the `[convert]` extra) or `.npz` file with the
    original key names, unwrapped from {'model': ...} / 'module.' prefixes."""
    path = os.path.expanduser(path or "")
    if not path:
        raise CheckpointError(f"--{flag} is required")
    if not os.path.isfile(path):
        raise CheckpointError(f"--{flag}={path!r}: no such file")
    if path.endswith(".npz"):
        try:
            with np.load(path) as f:
                sd = {k: f[k] for k in f.files}
        except Exception as e:  # noqa: BLE001 - zip / pickle errors of a foreign file
            raise CheckpointError(f"--{flag}={path!r} is not a readable .npz: {e}") from None
    elif path.endswith((".pt", ".pth", ".bin", ".ckpt")):
        try:
            import torch
        except ImportError:
            raise CheckpointError(f"--{flag}={path!r}: reading a PyTorch file needs torch "
                                  f"({TORCH_HINT}), or pass the state dict as .npz") from None
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file
            raise CheckpointError(f"--{flag}={path!r} cannot be read by torch: {e}") from None
    else:
        raise CheckpointError(f"--{flag}={path!r}: expected a .pt / .pth or .npz file")
    if not isinstance(sd, dict):
        raise CheckpointError(f"--{flag}={path!r} does not hold a state dict")
    return {k: torch_llamagen.to_numpy(v) for k, v in torch_llamagen.unwrap(sd).items()}


def _need(sd: dict, key: str, flag: str, what: str) -> np.ndarray:
    if key not in sd:
        raise CheckpointError(f"--{flag} has no {key!r}: is it {what}?")
    return sd[key]


def _count(sd: dict, pattern: str) -> int:
    """1 + the largest N of keys matching `pattern` (a regex with one (\\d+) group), or 0."""
    rx = re.compile(pattern)
    return 1 + max((int(m.group(1)) for k in sd if (m := rx.match(k))), default=-1)


# ----------------------------------------------------------------------------- LlamaGen
def llamagen_shape(sd: dict, size: str = "", heads: int = 0) -> dict:
    """LlamaGenSettings fields (+ vocab, classes, size name) of a c2i GPT state dict."""
    what = "a LlamaGen c2i GPT (c2i_*.pt)"
    vocab, width = _need(sd, "tok_embeddings.weight", "gpt", what).shape
    classes = _need(sd, "cls_embedding.embedding_table.weight", "gpt", what).shape[0] - 1
    depth = _count(sd, r"layers\.(\d+)\.")
    if depth == 0:
        raise CheckpointError("--gpt has no layers.N.* entries: is it a LlamaGen c2i GPT?")
    mlp = _need(sd, "layers.0.feed_forward.w1.weight", "gpt", what).shape[0]
    rows = _need(sd, "layers.0.attention.wqkv.weight", "gpt", what).shape[0]
    if size and size not in SIZES:
        raise CheckpointError(f"--size={size!r}: LlamaGen's sizes are {sorted(SIZES)}")
    named = size or next((n for n, (d, _, w) in SIZES.items() if (d, w) == (depth, width)), "")
    if named:
        d, h, w = SIZES[named]
        if (depth, width) != (d, w):
            raise CheckpointError(f"--size={size}: LlamaGen-{size} has {d} layers of width {w} "
                                  f"but the GPT file has {depth} of {width} (layers.N, "
                                  "tok_embeddings.weight): wrong --size or wrong file?")
        if heads and heads != h:
            raise CheckpointError(f"--heads={heads} but {depth} layers of width {width} is "
                                  f"LlamaGen-{named}, which has {h} heads (the paper's size "
                                  "table): a wrong head count converts into a wrong model")
        if mlp != ffn_dim(width):
            raise CheckpointError(
                f"layers.0.feed_forward.w1.weight has {mlp} rows but LlamaGen-{named}'s MLP "
                f"width is {ffn_dim(width)} (2/3 * 4 * width rounded up to multiple_of=256): "
                "trained with another multiple_of / ffn_dim_multiplier? (omit --size and "
                "pass --heads for a custom shape)" if size else
                f"layers.0.feed_forward.w1.weight has {mlp} rows but LlamaGen-{named}'s MLP "
                f"width is {ffn_dim(width)} (multiple_of=256): another multiple_of / "
                "ffn_dim_multiplier? pass --heads=N to convert it as a custom shape")
        heads = heads or h
    elif not heads:
        raise CheckpointError(f"the GPT file is {depth} layers of width {width}, none of "
                              f"LlamaGen's sizes {sorted(SIZES)}: pass --heads=N")
    if width % heads or (width // heads) % 2:
        raise CheckpointError(f"--heads={heads} does not split the width {width} "
                              "(tok_embeddings.weight) into heads of an even size (2-D RoPE)")
    hd = width // heads
    kv2 = rows - width  # 2 * Hkv * D
    if kv2 <= 0 or kv2 % (2 * hd) or heads % (kv2 // (2 * hd)):
        raise CheckpointError(f"layers.0.attention.wqkv.weight has {rows} rows: not "
                              f"(H + 2 Hkv) * {hd} for H={heads} heads of {hd}; wrong --heads?")
    kv = kv2 // (2 * hd)
    return dict(width=width, depth=depth, num_heads=heads, num_kv_heads=0 if kv == heads else kv,
                mlp_dim=mlp, vocab=vocab, classes=classes, size=named)


def llamagen_vq_settings(sd: dict) -> dict:
    """VQGANSettings fields of LlamaGen's VQ state dict (vq_ds16_c2i.pt, vq_ds8_c2i.pt)."""
    what = "LlamaGen's VQ tokenizer (vq_ds16_c2i.pt)"
    codes, dim = _need(sd, "quantize.embedding.weight", "vq", what).shape
    ch = _need(sd, "encoder.conv_in.weight", "vq", what).shape[0]
    levels = _count(sd, r"encoder\.conv_blocks\.(\d+)\.")
    mult = tuple(int(_need(sd, f"encoder.conv_blocks.{i}.res.0.conv1.weight", "vq", what)
                     .shape[0] // ch) for i in range(levels))
    return dict({**LLAMAGEN_LAYOUT}, ch=int(ch), ch_mult=mult,
                num_res_blocks=_count(sd, r"encoder\.conv_blocks\.0\.res\.(\d+)\."),
                z_channels=int(_need(sd, "encoder.conv_out.weight", "vq", what).shape[0]),
                codebook_size=int(codes), code_dim=int(dim), l2_normalize=True,
                quant_conv_kernel=int(_need(sd, "quant_conv.weight", "vq", what).shape[-1]),
                dtype="float32")


# ----------------------------------------------------------------------------- VAR
def var_shape(sd: dict, heads: int = 0, patch_nums=None) -> tuple[dict, dict, tuple]:
    """(params, VARTransformer kwargs, patch_nums) of VAR's transformer state dict."""
    what = "VAR's transformer (var_d*.pth)"
    for k in ("pos_1LC", "lvl_embed.weight", "class_emb.weight"):
        _need(sd, k, "var", what)
    depth = _count(sd, r"blocks\.(\d+)\.")
    seq, num_scales = sd["pos_1LC"].shape[1], sd["lvl_embed.weight"].shape[0]
    if patch_nums is None:
        patch_nums = next((p for p in VAR_PATCH_NUMS.values()
                           if (len(p), sum(x * x for x in p)) == (num_scales, seq)), None)
        if patch_nums is None:
            raise CheckpointError(f"pos_1LC has {seq} positions over {num_scales} scales "
                                  "(lvl_embed.weight), not VAR's 256 or 512 patch numbers: "
                                  "pass --patch_nums=1,2,...")
    key = "blocks.0.attn.scale_mul_1H11"
    l2_heads = sd[key].shape[1] if key in sd else 0
    if heads and l2_heads and heads != l2_heads:
        raise CheckpointError(f"--heads={heads} but {key} has {l2_heads} heads")
    if not heads and (l2_heads or depth) != depth:
        raise CheckpointError(f"{key} has {l2_heads} heads but VAR-d{depth} has {depth} (VAR's "
                              f"rule: heads = depth): pass --heads={l2_heads} if that is meant")
    heads = heads or depth
    width = sd["class_emb.weight"].shape[1]
    if width % heads:
        raise CheckpointError(f"{heads} heads do not divide VAR's width {width} "
                              "(class_emb.weight): wrong --heads?")
    params, cfg = torch_var.convert_var_state_dict(sd, patch_nums, heads)
    return params, cfg, tuple(patch_nums)


def var_vae_settings(sd: dict, patch_nums) -> dict:
    """VQGANSettings fields of VAR's VQVAE state dict (vae_ch160v4096z32.pth)."""
    what = "VAR's VQVAE (vae_ch160v4096z32.pth)"
    codes, dim = _need(sd, "quantize.embedding.weight", "vae", what).shape
    ch = _need(sd, "encoder.conv_in.weight", "vae", what).shape[0]
    levels = _count(sd, r"encoder\.down\.(\d+)\.")
    mult = tuple(int(_need(sd, f"encoder.down.{i}.block.0.conv1.weight", "vae", what).shape[0]
                     // ch) for i in range(levels))
    phis = _count(sd, r"quantize\.quant_resi\.qresi_ls\.(\d+)\.")
    if not phis:
        phis = 1 if "quantize.quant_resi.qresi.weight" in sd else _count(
            sd, r"quantize\.quant_resi\.(\d+)\.")
    return dict({**VAR_QUANTIZER, **VAR_LAYOUT}, ch=int(ch), ch_mult=mult,
                num_res_blocks=_count(sd, r"encoder\.down\.0\.block\.(\d+)\."),
                z_channels=int(_need(sd, "encoder.conv_out.weight", "vae", what).shape[0]),
                codebook_size=int(codes), code_dim=int(dim), num_phi=int(phis),
                scales=tuple(int(p) for p in patch_nums), dtype="float32")


# ----------------------------------------------------------------------------- runs
def _tokenizer_config(vq: dict):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = section(VQGANSettings, name="vqgan", **vq)
    c.data = ml_collections.ConfigDict({"kind": "image", "name": "none",
                                        "note": "converted weights: no data here"})
    c.train = train_section(num_steps=1, lr=0.0, tensorboard=False)
    c.mesh, c.sharding = parallel_config()
    return c


def _convert_tokenizer(vq: dict, sd: dict, image_size: int, convert) -> tuple:
    """(VQGANSettings, image DataSpec, generator params) of a tokenizer state dict."""
    settings = VQGANSettings(**vq)
    spec = DataSpec((image_size, image_size, 3), 256, 0, "image")
    ImageSpace.of(spec, settings.ch_mult, settings.pad_to,
                  settings.scales if settings.multiscale else None)
    return settings, spec, convert(sd, settings.module(3))


def _model_config(model_section, data, sample: dict, converted: dict):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = model_section
    c.data = data
    c.train = train_section(num_steps=1, lr=0.0, tensorboard=False, sample_at_end=False)
    c.sample = section(SamplingSettings, num=16, batch_size=16, **sample)
    c.eval = section(EvalSettings, features="inception", num_samples=50000)
    c.mesh, c.sharding = parallel_config()
    c.converted = ml_collections.ConfigDict(converted)
    return c


def _check_out(out: str) -> str:
    out = os.path.abspath(os.path.expanduser(out or ""))
    if not out or out == os.path.abspath(os.sep):
        raise CheckpointError("--out must name a new run directory")
    if os.path.exists(os.path.join(out, "config.json")) or os.path.exists(
            os.path.join(out, "checkpoints")):
        raise CheckpointError(f"--out={out!r} already holds a run: choose a new directory")
    return out


def _save_params_run(workdir: str, config, spec, state, meta: dict) -> None:
    ckpt = Checkpointer(workdir)
    ckpt.save(0, state, meta)
    ckpt.close()
    save_spec(spec, workdir)
    save_config(config, workdir)  # last: a run dir with config.json is complete


def _write(out: str, config, tok_config, tok_spec, tok_params, params) -> int:
    """Writes the tokenizer sub-run, builds the experiment of `config` (which loads it),
    checks `params` against its model and saves the TrainState at step 0. A failure removes
    what it wrote. Returns the model's parameter count."""
    created = not os.path.exists(out)
    try:
        gen = jax.tree.map(jnp.asarray, tok_params)
        _save_params_run(os.path.join(out, TOKENIZER_DIR), tok_config, tok_spec,
                         {"params": {"generator": gen}}, {"step": 0, "converted": True})
        return _finish(out, config, params)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _finish(out, config, params) -> int:
    exp = Experiment(config)

    want = dict(jax.tree_util.tree_flatten_with_path(exp.abstract_state.params)[0])
    got = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    if set(want) != set(got):
        diff = sorted(map(jax.tree_util.keystr, set(want) ^ set(got)))
        raise CheckpointError(f"converted parameters do not match the model: {diff[:5]}")
    for path, a in want.items():
        if tuple(got[path].shape) != tuple(a.shape):
            raise CheckpointError(f"{jax.tree_util.keystr(path)}: converted {got[path].shape}, "
                                  f"the model needs {a.shape}")

    def create(p):
        return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=exp.tx.init(p),
                          ema_params=p, rng=jax.random.PRNGKey(config.seed))

    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    state = jax.jit(create, out_shardings=exp.state_sharding)(params)
    _save_params_run(out, config, exp.data.spec, state, {"step": 0, "data_position": 0})
    return int(sum(x.size for x in jax.tree.leaves(params)))


def llamagen_image_size(gpt: str, image_size: int = 0) -> int:
    """The image side a LlamaGen GPT was trained at: the file name's `_<side>` suffix
    (c2i_B_256.pt, c2i_L_384.pt) or `image_size` (> 0); both and different, or neither, is
    refused (a wrong side puts the 2-D RoPE on the wrong token grid without a word)."""
    stem = os.path.splitext(os.path.basename(str(gpt)))[0]
    m = re.search(r"_(\d+)$", stem)
    named = int(m.group(1)) if m else 0
    if named and image_size and named != image_size:
        raise ConfigError(f"--image_size={image_size} but the file name {os.path.basename(gpt)} "
                          f"says {named}: drop the flag, or rename the file")
    if not (named or image_size):
        raise ConfigError(f"--image_size is required: the file name {os.path.basename(gpt)} "
                          "does not end in the image side (_256, _384, _512)")
    return image_size or named


def convert_llamagen(gpt: str, vq: str, out: str, size: str = "", heads: int = 0,
                     image_size: int = 0, scan_layers: bool = False) -> dict:
    """LlamaGen c2i GPT + VQ files -> run directory `out` (`scan_layers`: a run of the
    scanned layout, design rule 23, e.g. to fine-tune the large sizes with remat).
    `image_size`: 0 = read from the GPT file's name (`llamagen_image_size`). Returns a
    summary dict."""
    image_size = llamagen_image_size(gpt, image_size)
    out = _check_out(out)
    gsd, vsd = read_state_dict(gpt, "gpt"), read_state_dict(vq, "vq")
    shape = llamagen_shape(gsd, size, heads)
    vq_fields = llamagen_vq_settings(vsd)
    if vq_fields["codebook_size"] != shape["vocab"]:
        raise CheckpointError(f"the GPT's tok_embeddings.weight has {shape['vocab']} codes but "
                              f"the VQ's quantize.embedding.weight {vq_fields['codebook_size']}:"
                              " GPT and VQ of different models?")
    settings, tok_spec, tok_params = _convert_tokenizer(vq_fields, vsd, image_size,
                                                        torch_llamagen_vq.convert_vq)
    f = 2 ** (len(settings.ch_mult) - 1)
    grid = (image_size // f, image_size // f)
    m = LlamaGenSettings(width=shape["width"], depth=shape["depth"],
                         num_heads=shape["num_heads"], num_kv_heads=shape["num_kv_heads"],
                         mlp_dim=shape["mlp_dim"], dtype="float32", scan_layers=scan_layers)
    params = torch_llamagen.convert_gpt(gsd, m.llamagen_decoder(shape["vocab"],
                                                                shape["classes"], grid))
    name = f"llamagen_{shape['size']}" if shape["size"] else "run"
    config = _model_config(
        section(LlamaGenSettings, name="llamagen", width=m.width, depth=m.depth,
                num_heads=m.num_heads, num_kv_heads=m.num_kv_heads, mlp_dim=m.mlp_dim,
                dtype="float32", scan_layers=scan_layers),
        section(TokenSpecSettings, token_shape=grid, codebook_size=shape["vocab"],
                num_classes=shape["classes"], tokenizer=os.path.join(out, TOKENIZER_DIR)),
        preset(name),
        dict(system="llamagen", size=shape["size"], preset=name, image_size=image_size,
             files=dict(gpt=os.path.abspath(gpt), vq=os.path.abspath(vq))))
    n = _write(out, config, _tokenizer_config(vq_fields), tok_spec,
               tok_params, params)
    return dict(out=out, params=n, preset=name, grid=grid, **{k: shape[k] for k in (
        "depth", "width", "num_heads", "mlp_dim", "vocab", "classes")})


def convert_var(var: str, vae: str, out: str, heads: int = 0, patch_nums=None,
                scan_layers: bool = False) -> dict:
    """VAR transformer + VQVAE files -> run directory `out` (`scan_layers`: the scanned
    layout, as `convert_llamagen`). Returns a summary dict."""
    out = _check_out(out)
    tsd, vsd = read_state_dict(var, "var"), read_state_dict(vae, "vae")
    params, cfg, patch_nums = var_shape(tsd, heads, patch_nums)
    vae_fields = var_vae_settings(vsd, patch_nums)
    for key, ours, theirs in (("head.weight", cfg["vocab_size"], vae_fields["codebook_size"]),
                              ("word_embed.weight", cfg["code_dim"], vae_fields["code_dim"])):
        if ours != theirs:
            raise CheckpointError(f"the transformer's {key} implies {ours} but the VQVAE's "
                                  f"quantize.embedding.weight {theirs}: files of different "
                                  "models?")
    settings, tok_spec, tok_params = _convert_tokenizer(
        vae_fields, vsd, patch_nums[-1] * 2 ** (len(vae_fields["ch_mult"]) - 1),
        torch_var_vq.convert_vqvae)
    config = _model_config(
        section(VARSettings, name="var", depth=cfg["depth"], width=cfg["width"],
                num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"],
                attn_l2_norm=cfg["attn_l2_norm"], code_dim=cfg["code_dim"], dtype="float32",
                scan_layers=scan_layers),
        section(TokenSpecSettings, token_shape=(patch_nums[-1],) * 2, scales=patch_nums,
                codebook_size=cfg["vocab_size"], num_classes=cfg["num_classes"],
                tokenizer=os.path.join(out, TOKENIZER_DIR)),
        preset("var"),
        dict(system="var", size=f"d{cfg['depth']}", preset="var",
             image_size=tok_spec.shape[0],
             files=dict(var=os.path.abspath(var), vae=os.path.abspath(vae))))
    if scan_layers:

        params = stack_layers(params)
    full = {"var": params, "tokenizer": tokenizer_subtree({"generator": tok_params})}
    n = _write(out, config, _tokenizer_config(vae_fields), tok_spec,
               tok_params, full)
    return dict(out=out, params=n, preset="var", patch_nums=patch_nums,
                **{k: cfg[k] for k in ("depth", "width", "num_heads", "vocab_size",
                                       "num_classes")})
