"""Training-step time of argen_jax's PixelCNN++ against a PyTorch PixelCNN++ of the same size.

The PyTorch model below is written for this comparison: the same layers (down-shifted 2x3 and
down-right-shifted 2x2 convs by padding + nn.Conv2d, stride-2 convs down, nn.ConvTranspose2d
up, gated ResNets with concat_elu, U-Net shortcuts), the same discretized logistic mixture
loss, Adam, fp32, the same batch; parameter counts are checked equal. Both run on the same
threads after warm-up (JAX: compiled, `block_until_ready`); steps alternate between the two so
that load from other processes hits both alike; medians are reported.

    python -m experiments.benchmarks.speed.pixelcnnpp_speed \
        [--setting=fmnist|patches|both|cifar] [--impl=conv|taps] [--torch_device=cuda]

On a GPU machine JAX runs on the GPU; `--torch_device=cuda` puts PyTorch there too (cuDNN
autotuning on; each side's default float32 precision). `--setting=cifar` is the paper's model.

ARGEN_XLA_CPU_FLAGS=0 times XLA's default CPU flags instead of argen_jax/xla_env.py's.

Prints one JSON line: the setting's row (`--setting=both`: {"rows": [fmnist, patches]}).
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from experiments.benchmarks import common

# (H, W, C, features, num_resnet, num_mixtures, batch): the :cpu configs' models
SETTINGS = {
    "fmnist": (28, 28, 1, 32, 1, 5, 16),
    "patches": (32, 32, 3, 32, 1, 5, 16),
    # the paper's CIFAR-10 model (160 filters, 5 blocks per resolution), its per-GPU batch
    "cifar": (32, 32, 3, 160, 5, 10, 16),
}


_SETTING = flags.DEFINE_enum("setting", "both", ["both", *SETTINGS], "Model and batch "
                             "(both: fmnist and patches).")
_THREADS = flags.DEFINE_integer("threads", os.cpu_count(), "torch threads.")
_IMPL = flags.DEFINE_enum("impl", "conv", ["conv", "taps"], "Our shifted convs' impl.")
_TORCH_DEVICE = flags.DEFINE_enum("torch_device", "cpu", ["cpu", "cuda"], "PyTorch's device.")
common.timing_flags(repeats=10, warmup=2)  # steps timed (alternating) / after the compile


# --------------------------------------------------------------------------- PyTorch model
def torch_model(channels, features, num_resnet, num_mixtures, num_resolutions=3):
    import torch
    import torch.nn.functional as F
    from torch import nn

    def concat_elu(x):
        return F.elu(torch.cat([x, -x], 1))

    class DownShifted(nn.Module):  # rows i-kh+1..i, centred columns
        def __init__(self, cin, cout, k=(2, 3), stride=1):
            super().__init__()
            self.k = k
            self.conv = nn.Conv2d(cin, cout, k, stride)

        def forward(self, x):
            kh, kw = self.k
            return self.conv(F.pad(x, ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)))

    class DownRightShifted(nn.Module):  # rows i-kh+1..i, columns j-kw+1..j
        def __init__(self, cin, cout, k=(2, 2), stride=1):
            super().__init__()
            self.k = k
            self.conv = nn.Conv2d(cin, cout, k, stride)

        def forward(self, x):
            kh, kw = self.k
            return self.conv(F.pad(x, (kw - 1, 0, kh - 1, 0)))

    class Up(nn.Module):  # transposed conv, cropped like the paper's deconvs
        def __init__(self, cin, cout, k, centred):
            super().__init__()
            self.k, self.centred = k, centred
            self.conv = nn.ConvTranspose2d(cin, cout, k, 2, output_padding=1)

        def forward(self, x):
            h, w = x.shape[2] * 2, x.shape[3] * 2
            y = self.conv(x)
            c0 = (self.k[1] - 1) // 2 if self.centred else 0
            return y[:, :, :h, c0 : c0 + w]

    class GatedResnet(nn.Module):
        def __init__(self, f, conv, a_ch=0):
            super().__init__()
            self.c1 = conv(2 * f, f)
            self.nin = nn.Conv2d(2 * a_ch, f, 1) if a_ch else None
            self.c2 = conv(2 * f, 2 * f)

        def forward(self, x, a=None):
            c = self.c1(concat_elu(x))
            if a is not None:
                c = c + self.nin(concat_elu(a))
            c = self.c2(concat_elu(c))
            g, gate = c.chunk(2, 1)
            return x + g * torch.sigmoid(gate)

    def down_shift(x):
        return F.pad(x, (0, 0, 1, 0))[:, :, :-1]

    def right_shift(x):
        return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]

    f, r, nres = features, num_resnet, num_resolutions
    per = 1 + 2 * channels + channels * (channels - 1) // 2
    u_conv = lambda cin, cout: DownShifted(cin, cout, (2, 3))  # noqa: E731
    ul_conv = lambda cin, cout: DownRightShifted(cin, cout, (2, 2))  # noqa: E731

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            cin = channels + 1
            self.u_in = DownShifted(cin, f, (2, 3))
            self.ul_in_up = DownShifted(cin, f, (1, 3))
            self.ul_in_left = DownRightShifted(cin, f, (2, 1))
            self.u_down = nn.ModuleList([DownShifted(f, f, (2, 3), 2) for _ in range(nres - 1)])
            self.ul_down = nn.ModuleList([DownRightShifted(f, f, (2, 2), 2)
                                          for _ in range(nres - 1)])
            self.u_d = nn.ModuleList([GatedResnet(f, u_conv) for _ in range(nres * r)])
            self.ul_d = nn.ModuleList([GatedResnet(f, ul_conv, f) for _ in range(nres * r)])
            n_up = r + (nres - 1) * (r + 1)
            self.u_u = nn.ModuleList([GatedResnet(f, u_conv, f) for _ in range(n_up)])
            self.ul_u = nn.ModuleList([GatedResnet(f, ul_conv, 2 * f) for _ in range(n_up)])
            self.u_up = nn.ModuleList([Up(f, f, (2, 3), True) for _ in range(nres - 1)])
            self.ul_up = nn.ModuleList([Up(f, f, (2, 2), False) for _ in range(nres - 1)])
            self.out = nn.Conv2d(f, num_mixtures * per, 1)

        def forward(self, x):  # x [B, C, H, W] in [-1, 1]
            x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
            us = [down_shift(self.u_in(x))]
            uls = [down_shift(self.ul_in_up(x)) + right_shift(self.ul_in_left(x))]
            k = 0
            for level in range(nres):
                if level:
                    us.append(self.u_down[level - 1](us[-1]))
                    uls.append(self.ul_down[level - 1](uls[-1]))
                for _ in range(r):
                    us.append(self.u_d[k](us[-1]))
                    uls.append(self.ul_d[k](uls[-1], us[-1]))
                    k += 1
            u, ul = us.pop(), uls.pop()
            k = 0
            for level in reversed(range(nres)):
                for _ in range(r if level == nres - 1 else r + 1):
                    u = self.u_u[k](u, us.pop())
                    ul = self.ul_u[k](ul, torch.cat([u, uls.pop()], 1))
                    k += 1
                if level:
                    u = self.u_up[level - 1](u)
                    ul = self.ul_up[level - 1](ul)
            return self.out(F.elu(ul))

    return Net()


def torch_mixture_nll(out, x, channels, levels=256):
    """Discretized logistic mixture NLL (nats, summed), same formula as argen_jax's head."""
    import torch
    import torch.nn.functional as F

    b, p, h, w = out.shape
    c = channels
    k = p // (1 + 2 * c + c * (c - 1) // 2)
    out = out.permute(0, 2, 3, 1)  # [B, H, W, P]
    logits = out[..., :k]
    means = out[..., k : k + c * k].reshape(b, h, w, c, k)
    log_s = out[..., k + c * k : k + 2 * c * k].reshape(b, h, w, c, k).clamp(min=-7.0)
    coeffs = torch.tanh(out[..., k + 2 * c * k :].reshape(b, h, w, -1, k))
    xu = x.permute(0, 2, 3, 1)  # [B, H, W, C] in [-1, 1]
    if c == 3:
        m1 = means[..., 1, :] + coeffs[..., 0, :] * xu[..., 0:1]
        m2 = means[..., 2, :] + coeffs[..., 1, :] * xu[..., 0:1] + coeffs[..., 2, :] * xu[..., 1:2]
        means = torch.stack([means[..., 0, :], m1, m2], -2)
    xs = xu.unsqueeze(-1)
    half = 1.0 / (levels - 1)
    inv_s = torch.exp(-log_s)
    a = inv_s * (xs - means + half)
    bb = inv_s * (xs - means - half)
    lo, hi = F.logsigmoid(a), F.logsigmoid(-bb)
    mid = lo + hi + torch.log(-torch.expm1(bb - a))
    lp = torch.where(xs < -0.999, lo, torch.where(xs > 0.999, hi, mid))
    lp = lp.sum(-2) + F.log_softmax(logits, -1)
    return -torch.logsumexp(lp, -1).sum()


# --------------------------------------------------------------------------- JAX model
def jax_step(channels, features, num_resnet, num_mixtures, batch_size, h, w, impl):
    from argen_jax.heads import logistic_mixture as lm
    from argen_jax.models.pixelcnnpp import PixelCNNPP

    model = PixelCNNPP(levels=256, channels=channels, features=features,
                       num_resnet=num_resnet, num_mixtures=num_mixtures, dropout=0.0,
                       impl=impl)
    x0 = jnp.zeros((batch_size, h, w, channels), jnp.int32)
    params = model.init(jax.random.PRNGKey(0), x0)["params"]
    params = jax.tree.map(lambda a: a.value if hasattr(a, "value") else a, params,
                          is_leaf=lambda a: hasattr(a, "value"))
    tx = optax.adam(1e-3)
    opt = tx.init(params)

    def loss_fn(p, x):
        out = model.apply({"params": p}, x)
        return lm.nll(out, x if channels > 1 else x[..., 0], 256, channels).sum()

    @jax.jit
    def step(p, o, x):
        loss, g = jax.value_and_grad(loss_fn)(p, x)
        upd, o = tx.update(g, o, p)
        return optax.apply_updates(p, upd), o, loss

    n = sum(a.size for a in jax.tree.leaves(params))
    return step, params, opt, n


def run_setting(name, impl, torch_device="cpu"):
    import torch

    h, w, c, f, r, k, bs = SETTINGS[name]
    x = np.random.default_rng(0).integers(0, 256, (bs, h, w, c)).astype(np.int32)
    step, params, opt, n_jax = jax_step(c, f, r, k, bs, h, w, impl)
    xj = jnp.asarray(x)

    torch.manual_seed(0)
    net = torch_model(c, f, r, k).to(torch_device)
    n_torch = sum(p.numel() for p in net.parameters())
    if n_torch != n_jax:
        raise SystemExit(f"{name}: parameter counts differ: jax {n_jax} torch {n_torch}")
    topt = torch.optim.Adam(net.parameters(), 1e-3)
    xt = (torch.from_numpy(x).permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0).to(torch_device)

    def torch_step():
        topt.zero_grad(set_to_none=True)
        loss = torch_mixture_nll(net(xt), xt, c)
        loss.backward()
        topt.step()
        return loss.item()  # waits for the step (as block_until_ready does for JAX)

    state = [params, opt]

    def jstep():
        state[0], state[1], loss = step(state[0], state[1], xj)
        jax.block_until_ready(loss)
        return loss

    with common.Stopwatch() as compiling:
        jl = jstep()
    tl = torch_step()
    common.times(jstep, repeats=0)  # --warmup steps each
    common.times(torch_step, repeats=0)
    reps = flags.FLAGS.repeats
    tj, tt = [], []
    for _ in range(reps):  # alternate, so background load hits both alike
        tj += common.times(jstep, repeats=1, warmup=0)
        tt += common.times(torch_step, repeats=1, warmup=0)
    mj, mt = float(np.median(tj)), float(np.median(tt))
    return {"setting": name, "image": [h, w, c], "batch": bs, "features": f, "num_resnet": r,
            "num_mixtures": k, "params": n_jax, "impl": impl,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "jax_step_ms": round(1000 * mj, 1),
            "torch_step_ms": round(1000 * mt, 1), "torch_over_jax": round(mt / mj, 3),
            "jax_first_loss_per_dim": round(float(jl) / x.size, 4),
            "torch_first_loss_per_dim": round(float(tl) / x.size, 4),
            "jax_compile_s": round(compiling.seconds, 1), "reps": reps,
            "jax_device": str(jax.devices()[0]), "torch_device": torch_device,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count()}


def main(argv):
    del argv
    import torch

    torch.set_num_threads(_THREADS.value)
    torch.backends.cudnn.benchmark = True
    names = ["fmnist", "patches"] if _SETTING.value == "both" else [_SETTING.value]
    rows = [run_setting(name, _IMPL.value, _TORCH_DEVICE.value) for name in names]
    common.emit(rows[0] if len(rows) == 1 else {"benchmark": "pixelcnnpp_speed", "rows": rows})


if __name__ == "__main__":
    common.run(main)
