"""Training parity with VAR's and LlamaGen's own trainers (PyTorch, CPU, float32, dropout off).

VAR: a small VAR built by VAR's code (models.VAR, init_weights with alng) trains for --steps
steps through VAR's real trainer pieces: `trainer.VARTrainer.train_step` (its loss weights and
`AmpOptimizer.backward_clip_step`: clipping at 2.0), the optimizer of train.py (AdamW betas
(0.9, 0.95) over `utils.lr_control.filter_params` groups, the nowd_keys read from VAR's
train.py) and `utils.lr_control.lr_wd_annealing` ('lin0', warm-up from wp0, weight decay
twd -> twde) every step. Ours starts from the same weights (`convert/var_torch.py`) and trains
with `train/optim.make_optimizer` over the train section of `experiments/var/imagenet.py:d30`
(decay mask, lin0, wd cosine: only the step count, warm-up and peak lr are changed to fit a
short run) and `VARFamily.loss`. Both see the same batches: class labels, token maps and
the teacher-forcing inputs VAR's quantizer (`idxBl_to_var_input`, a random VQVAE) builds from
them (the tokenizer is excluded: ours is checked against VAR's elsewhere).

LlamaGen: a small `autoregressive.models.gpt.Transformer` trains with `train_c2i.py`'s
`creat_optimizer` (AdamW, decay on >= 2-D parameters), its clipping at 1.0 and constant lr;
ours (`convert/llamagen_torch.py`, `LlamaGenFamily.loss`) with the train section of
`experiments/llamagen/imagenet.py:B` (lr raised to move the weights in a short run).

Reports, per model, the largest |loss difference| over the steps (and relative to the loss),
the final parameter difference relative to how far the weights moved (global L2 norms, and
the worst parameter), the lr / wd schedule's largest relative difference, and whether our
no-decay set equals VAR's. One JSON line.

    pip install torch==2.13.0 pytz typed-argument-parser   # what VAR's modules import
    git --git-dir=<fetched VAR>/repo archive HEAD | tar -x -C /tmp/var_repo   # or a clone
    python -m experiments.benchmarks.checks.var_train_parity --var_repo=/tmp/var_repo \
        --llamagen_repo=/tmp/llamagen_repo
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import os
import sys
import types

from absl import app, flags

from experiments.benchmarks import common

FLAGS = flags.FLAGS
flags.DEFINE_string("var_repo", "", "a checkout of FoundationVision/VAR")
flags.DEFINE_string("llamagen_repo", "", "a checkout of FoundationVision/LlamaGen ('': skip)")
flags.DEFINE_integer("steps", 40, "optimizer steps of each run")
flags.DEFINE_integer("batch", 8, "examples per step")
flags.DEFINE_integer("seed", 0, "weights and batches")


@contextlib.contextmanager
def reference_repo(path: str, packages: tuple[str, ...]):
    """Imports from `path` (and forgets its top-level modules `packages` afterwards: VAR and
    LlamaGen both have a `utils` package). print() accepts VAR's extra keywords and is quiet."""
    sys.path.insert(0, path)
    real_print = builtins.print
    builtins.print = lambda *a, **k: None
    try:
        yield
    finally:
        builtins.print = real_print
        sys.path.remove(path)
        for name in list(sys.modules):
            if name.split(".")[0] in packages:
                del sys.modules[name]


def tree_diff(ours: dict, theirs: dict, start: dict) -> dict:
    """Final parameter difference relative to the distance travelled (flat {name: array})."""
    import numpy as np

    num = sum(float(np.sum((ours[k] - theirs[k]) ** 2)) for k in theirs)
    moved = sum(float(np.sum((theirs[k] - start[k]) ** 2)) for k in theirs)
    worst, worst_name = 0.0, ""
    for k in theirs:
        m = float(np.linalg.norm(theirs[k] - start[k]))
        if m > 0:
            r = float(np.linalg.norm(ours[k] - theirs[k])) / m
            if r > worst:
                worst, worst_name = r, k
    return {"param_diff_over_moved": (num / moved) ** 0.5 if moved else float("nan"),
            "moved_l2": moved ** 0.5, "worst_param": worst_name,
            "worst_param_diff_over_moved": worst}


def flat(params: dict) -> dict:
    import jax
    import numpy as np

    from argen_jax.train.optim import param_path

    return {param_path(p): np.asarray(x) for p, x in
            jax.tree_util.tree_flatten_with_path(params)[0]}


def batches(rng, steps, batch, num_classes, sizes, vocab):
    """Token maps with class structure (a class's maps share most codes) so the loss falls."""

    length = sum(sizes)
    protos = rng.integers(0, vocab, (num_classes, length))
    out = []
    for _ in range(steps):
        labels = rng.integers(0, num_classes, batch)
        tokens = protos[labels].copy()
        noise = rng.random((batch, length)) < 0.3
        tokens[noise] = rng.integers(0, vocab, int(noise.sum()))
        out.append((labels, tokens))
    return out


def train_ours(family, params, cfg, feed):
    """Our training step (train/experiment.py's `_train_step`): value_and_grad of the family's
    loss, the one optimizer, apply_updates. feed(step) -> batch. Returns losses, params, lrs."""
    import jax
    import optax

    from argen_jax.train.optim import make_optimizer, weight_decay_schedule

    tx, schedule = make_optimizer(cfg, family)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, batch, t):
        loss_fn = lambda p: family.loss(p, batch, jax.random.PRNGKey(0), True, t)  # noqa: E731
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses, lrs, wds = [], [], []
    wd = weight_decay_schedule(cfg)
    for t in range(cfg.num_steps):
        params, opt_state, loss = step(params, opt_state, feed(t), t)
        losses.append(float(loss))
        lrs.append(float(schedule(t)))
        wds.append(float(wd(t)))
    return losses, params, lrs, wds


def summary(ours_losses, theirs_losses, lr_pairs) -> dict:
    import numpy as np

    a, b = np.asarray(ours_losses), np.asarray(theirs_losses)
    out = {"steps": len(a), "loss_first": float(b[0]), "loss_last": float(b[-1]),
           "max_abs_loss_diff": float(np.max(np.abs(a - b))),
           "max_rel_loss_diff": float(np.max(np.abs(a - b) / np.abs(b)))}
    for name, (ours, theirs) in lr_pairs.items():
        o, t = np.asarray(ours), np.asarray(theirs)
        out[f"max_rel_{name}_diff"] = float(np.max(np.abs(o - t) / np.maximum(np.abs(t), 1e-30)))
    return out


# --------------------------------------------------------------------------- VAR
def var_no_decay_keys(repo: str) -> set[str]:
    """The nowd_keys set literal of the filter_params call in VAR's train.py."""
    tree = ast.parse(open(os.path.join(repo, "train.py")).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "filter_params":
            for kw in node.keywords:
                if kw.arg == "nowd_keys":
                    return set(ast.literal_eval(kw.value))
    raise RuntimeError("no filter_params(..., nowd_keys=...) call in VAR's train.py")


def var_parity(repo: str, steps: int, batch: int, seed: int) -> dict:
    import jax.numpy as jnp
    import ml_collections
    import numpy as np
    import torch

    from argen_jax import config_lib
    from argen_jax.data.pipeline import DataSpec
    from argen_jax.models.var import VARFamily, VARSettings
    from argen_jax.pretrained.torch_var import convert_var_state_dict
    from argen_jax.train.settings import TrainSettings
    from experiments.var import imagenet as var_recipe

    patch_nums, vocab, cvae, depth, classes = (1, 2, 3, 4), 64, 8, 2, 10
    sizes = [p * p for p in patch_nums]
    recipe = var_recipe.get_config("d30")
    warmup, peak = 5, 1e-3  # a short run: the recipe's warm-up / peak lr would not move it
    overrides = dict(num_steps=steps, warmup_steps=warmup, lr=peak)
    cfg = config_lib.typed(TrainSettings, {**recipe.train.to_dict(), **overrides}, "train")
    alng = var_recipe.RECIPES["d16"].ada_gamma_init  # 1e-3: gammas that are not ~0 move more

    with reference_repo(repo, ("dist", "models", "utils", "trainer")):
        torch.manual_seed(seed)
        from models import VAR, VQVAE
        from trainer import VARTrainer
        from utils.amp_sc import AmpOptimizer
        from utils.lr_control import filter_params, lr_wd_annealing
        from utils.misc import MetricLogger

        vae = VQVAE(vocab_size=vocab, z_channels=cvae, ch=32, test_mode=True,
                    share_quant_resi=4, v_patch_nums=patch_nums)
        var = VAR(vae_local=vae, num_classes=classes, depth=depth, embed_dim=64 * depth,
                  num_heads=depth, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0,
                  norm_eps=1e-6, shared_aln=False, cond_drop_rate=0.0, attn_l2_norm=True,
                  patch_nums=patch_nums, flash_if_available=False, fused_if_available=False)
        var.init_weights(init_adaln=0.5, init_adaln_gamma=alng, init_head=0.02, init_std=-1)
        start_sd = {k: v.detach().clone() for k, v in var.state_dict().items()}
        nowd = var_no_decay_keys(repo)
        names, paras, groups = filter_params(var, nowd_keys=nowd)
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0, betas=(cfg.b1, cfg.b2))
        amp = AmpOptimizer(mixed_precision=0, optimizer=opt, names=names, paras=paras,
                           grad_clip=cfg.grad_clip, n_gradient_accumulation=1)
        trainer = VARTrainer(device="cpu", patch_nums=patch_nums, resos=patch_nums,
                             vae_local=vae, var_wo_ddp=var, var=var, var_opt=amp,
                             label_smooth=0.0)
        data = batches(np.random.default_rng(seed), steps, batch, classes, sizes, vocab)
        feeds, theirs_losses, their_lrs, their_wds = [], [], [], []
        tb = types.SimpleNamespace(update=lambda *a, **k: None)
        me = MetricLogger()
        me.log_iters = set(range(steps))
        for t, (labels, tokens) in enumerate(data):
            idx = [torch.as_tensor(m, dtype=torch.long) for m in np.split(tokens, np.cumsum(
                sizes)[:-1], axis=1)]
            with torch.no_grad():
                x_tf = vae.quantize.idxBl_to_var_input(idx).numpy()
            feeds.append({"tokens": jnp.asarray(tokens, jnp.int32),
                          "label": jnp.asarray(labels, jnp.int32),
                          "mask": jnp.ones((batch,), jnp.float32), "x_tf": jnp.asarray(x_tf)})
            vae.img_to_idxBl = lambda _, idx=idx: idx  # the batch's token maps (no images)
            _, lr, _, wd = lr_wd_annealing("lin0", opt, cfg.lr, cfg.weight_decay,
                                           cfg.weight_decay_end, t, warmup, steps,
                                           wp0=cfg.warmup_start_fraction,
                                           wpe=cfg.end_lr_fraction)
            trainer.train_step(it=t, g_it=t, stepping=True, metric_lg=me, tb_lg=tb,
                               inp_B3HW=torch.zeros(batch, 3, 8, 8),
                               label_B=torch.as_tensor(labels), prog_si=-1, prog_wp_it=1.0)
            theirs_losses.append(me.meters["Lm"].value)
            their_lrs.append(lr)
            their_wds.append(wd)
        end_sd = var.state_dict()

    class FedVAR(VARFamily):
        """VAR with the teacher-forcing inputs in the batch (VAR's quantizer made them)."""

        def teacher_forcing_inputs(self, params, tokens):
            raise AssertionError("fed")

        def logits(self, params, batch, rng=None, train=False):
            labels = self.labels(batch, rng, train)
            return self.model.apply({"params": params["var"]}, labels, batch["x_tf"],
                                    train=train)

    config = ml_collections.ConfigDict({"model": config_lib.section(
        VARSettings, name="var", depth=depth, label_dropout=0.0, code_dim=cvae,
        ada_gamma_init=alng)})
    spec = DataSpec((sum(sizes),), vocab, classes, "tokens", grid=(4, 4), scales=patch_nums)
    family = FedVAR(config, spec)
    start, _ = convert_var_state_dict(start_sd, patch_nums=patch_nums)
    end, _ = convert_var_state_dict(end_sd, patch_nums=patch_nums)
    losses, params, lrs, wds = train_ours(
        family, {"var": jax_tree(start)}, cfg, lambda t: feeds[t])
    ours_nowd = {k.strip() for k in cfg.no_decay.split(",")}
    out = summary(losses, theirs_losses, {"lr": (lrs, their_lrs), "wd": (wds, their_wds)})
    out.update(tree_diff(flat(params["var"]), flat(end), flat(start)))
    out["no_decay_equals_var_train_py"] = ours_nowd == nowd
    out["decayed_params_match"] = var_decay_groups_match(cfg, groups, names, start)
    out["losses_ours"] = [round(x, 6) for x in losses]
    out["losses_var"] = [round(x, 6) for x in theirs_losses]
    return out


def var_decay_groups_match(cfg, groups, names, start) -> bool:
    """Whether our decay mask decays as many elements as filter_params' 'D' group, and exempts
    as many as its 'ND' group (names and tensor counts differ: VAR's mat_qkv is our q, k, v)."""
    from argen_jax.train.optim import decay_mask

    mask = flat(decay_mask(cfg)(start))
    leaves = flat(start)
    ours = (sum(int(leaves[k].size) for k, m in mask.items() if bool(m)),
            sum(int(leaves[k].size) for k, m in mask.items() if not bool(m)))
    theirs = tuple(sum(int(p.numel()) for g in groups if (g["wd_sc"] > 0) == d
                       for p in g["params"]) for d in (True, False))
    return ours == theirs


def jax_tree(params: dict):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.asarray, params)


# --------------------------------------------------------------------------- LlamaGen
def llamagen_parity(repo: str, steps: int, batch: int, seed: int) -> dict:
    import ml_collections
    import numpy as np
    import torch

    from argen_jax import config_lib
    from argen_jax.data.pipeline import DataSpec
    from argen_jax.models.llamagen import LlamaGenFamily, LlamaGenSettings
    from argen_jax.pretrained.torch_llamagen import convert_gpt
    from argen_jax.train.settings import TrainSettings
    from experiments.llamagen import imagenet as llamagen_recipe

    vocab, classes, width, depth, heads, grid = 64, 10, 64, 2, 4, 4
    recipe = llamagen_recipe.get_config("B")
    cfg = config_lib.typed(TrainSettings, {**recipe.train.to_dict(), "num_steps": steps,
                                           "lr": 1e-3}, "train")
    stub = types.ModuleType("dataset.build")  # train_c2i.py imports its datasets (torchvision)
    stub.build_dataset = None
    with reference_repo(repo, ("autoregressive", "utils", "dataset", "tokenizer")):
        sys.modules["dataset.build"] = stub
        torch.manual_seed(seed)
        from autoregressive.models.gpt import ModelArgs, Transformer
        from autoregressive.train.train_c2i import creat_optimizer

        model = Transformer(ModelArgs(
            dim=width, n_layer=depth, n_head=heads, vocab_size=vocab, num_classes=classes,
            block_size=grid * grid, cls_token_num=1, token_dropout_p=0.0, resid_dropout_p=0.0,
            ffn_dropout_p=0.0, class_dropout_prob=0.1))
        model.cls_embedding.dropout_prob = 0.0  # keeps the null-class row, drops nothing
        with torch.no_grad():  # LlamaGen zeroes the head: give it weights so all params move
            model.output.weight.normal_(0.0, 0.02)
        start_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        logger = types.SimpleNamespace(info=lambda *a, **k: None)
        opt = creat_optimizer(model, cfg.weight_decay, cfg.lr, (cfg.b1, cfg.b2), logger)
        model.train()
        data = batches(np.random.default_rng(seed), steps, batch, classes, [grid * grid], vocab)
        theirs_losses = []
        for labels, tokens in data:
            z = torch.as_tensor(tokens, dtype=torch.long)
            _, loss = model(cond_idx=torch.as_tensor(labels), idx=z[:, :-1], targets=z)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            theirs_losses.append(loss.item())
        end_sd = model.state_dict()

    config = ml_collections.ConfigDict({"model": config_lib.section(
        LlamaGenSettings, name="llamagen", width=width, depth=depth, num_heads=heads,
        label_dropout=0.0, dropout=0.0)})
    spec = DataSpec((grid * grid,), vocab, classes, "tokens", grid=(grid, grid))
    family = LlamaGenFamily(config, spec)
    start = convert_gpt(start_sd, family.model)
    end = convert_gpt(end_sd, family.model)
    feeds = [{"tokens": np.asarray(t, np.int32), "label": np.asarray(lab, np.int32),
              "mask": np.ones((batch,), np.float32)} for lab, t in data]
    losses, params, lrs, _ = train_ours(family, jax_tree(start), cfg, lambda t: feeds[t])
    out = summary(losses, theirs_losses, {"lr": (lrs, [cfg.lr] * steps)})
    out.update(tree_diff(flat(params), flat(end), flat(start)))
    out["losses_ours"] = [round(x, 6) for x in losses]
    out["losses_llamagen"] = [round(x, 6) for x in theirs_losses]
    return out


def main(argv):
    del argv
    if not FLAGS.var_repo:
        raise app.UsageError("--var_repo: a checkout of FoundationVision/VAR")
    import torch

    torch.set_num_threads(1)
    result = {"check": "var_train_parity", "torch": torch.__version__,
              "var": var_parity(FLAGS.var_repo, FLAGS.steps, FLAGS.batch, FLAGS.seed)}
    if FLAGS.llamagen_repo:
        result["llamagen"] = llamagen_parity(FLAGS.llamagen_repo, FLAGS.steps, FLAGS.batch,
                                             FLAGS.seed)
    common.emit(result)


if __name__ == "__main__":
    common.run(main)
