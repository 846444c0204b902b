"""One training step of our Gated PixelCNN vs a PyTorch model of the same architecture.

Same shapes (binarized 28x28 MNIST-like batch), same layers, fp32, Adam, both on this CPU
with the same thread count. The PyTorch model is written the way the reference
implementations are: vertical (k//2+1) x k and horizontal 1 x (k//2+1) convolutions with
cropping (already the cheap "shifted" formulation, not masked 7x7 kernels).

Measured side by side in one run, after warm-up, interleaving rounds so machine noise hits
both; reports per-step medians and the ratio ours / torch (< 1: we are faster).

    pip install torch==2.13.0   # the local CPU wheel; never unpinned
    python -m experiments.benchmarks.speed.pixelcnn_vs_torch [--batch=32 --features=64 --layers=8]
"""
import os
import statistics
import types

from absl import flags

from experiments.benchmarks import common

_BATCH = flags.DEFINE_integer("batch", 32, "Images per step.")
_FEATURES = flags.DEFINE_integer("features", 64, "Channels.")
_LAYERS = flags.DEFINE_integer("layers", 8, "Gated layers after the first.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Rounds; each times every side in turn.")
_STEPS = flags.DEFINE_integer("steps", 5, "Steps per side per round (their mean).")
_THREADS = flags.DEFINE_integer("threads", os.cpu_count(), "torch threads.")


def build_jax(args, impl):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    from argen_jax.heads.categorical import categorical_nll
    from argen_jax.models.pixelcnn import GatedPixelCNN

    model = GatedPixelCNN(levels=2, channels=1, features=args.features,
                          num_layers=args.layers, in_kernel=7, kernel=3,
                          out_hidden=args.features, num_classes=10, impl=impl)
    x = jnp.asarray(args.x)
    y = jnp.asarray(args.y)
    params = nn.unbox(model.init(jax.random.PRNGKey(0), x, y))["params"]
    tx = optax.adam(1e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y):
        def loss(p):
            return categorical_nll(model.apply({"params": p}, x, y), x).mean()

        val, g = jax.value_and_grad(loss)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, val

    state = [params, opt]

    def run():
        state[0], state[1], val = step(state[0], state[1], x, y)
        val.block_until_ready()

    n = sum(p.size for p in jax.tree.leaves(params))
    return run, n


def build_torch(args):
    import torch
    from torch import nn

    torch.manual_seed(0)
    k0, k, f = 7, 3, args.features

    class Layer(nn.Module):
        def __init__(self, cin, ksize, first):
            super().__init__()
            self.k, self.first = ksize, first
            self.v = nn.Conv2d(cin, 2 * f, (ksize // 2 + 1, ksize),
                               padding=(ksize // 2, ksize // 2))
            self.v2h = nn.Conv2d(2 * f, 2 * f, 1)
            hk = ksize // 2 if first else ksize // 2 + 1  # mask A drops the centre tap
            self.h = nn.Conv2d(cin, 2 * f, (1, hk), padding=(0, ksize // 2))
            self.skip = nn.Conv2d(f, f, 1)
            self.res = nn.Conv2d(f, f, 1)
            self.cond = nn.Embedding(10, 2 * f)

        def forward(self, v_in, h_in, labels):
            hh, ww = v_in.shape[2:]
            v = self.v(v_in)[:, :, :hh]  # rows i - k//2 .. i
            link = self.v2h(nn.functional.pad(v, (0, 0, 1, 0))[:, :, :hh])  # shift down
            h = self.h(h_in)[:, :, :, :ww]  # cols j - k//2 .. j (.. j-1 for mask A)
            c = self.cond(labels)[:, :, None, None]
            gate = lambda t: torch.tanh(t[:, :f]) * torch.sigmoid(t[:, f:])  # noqa: E731
            v_out, g = gate(v + c), gate(h + link + c)
            h_out = self.res(g)
            return v_out, (h_out if self.first else h_in + h_out), self.skip(g)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Layer(1, k0, True)] +
                                        [Layer(f, k, False) for _ in range(args.layers)])
            self.out1 = nn.Conv2d(f, f, 1)
            self.out2 = nn.Conv2d(f, 2, 1)

        def forward(self, x, labels):
            v = h = x * 2.0 - 1.0
            skip = 0
            for layer in self.layers:
                v, h, s = layer(v, h, labels)
                skip = skip + s
            return self.out2(torch.relu(self.out1(torch.relu(skip))))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.from_numpy(args.x.transpose(0, 3, 1, 2).astype("float32"))
    target = torch.from_numpy(args.x[..., 0].astype("int64"))
    labels = torch.from_numpy(args.y.astype("int64"))

    def run():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x, labels), target)
        loss.backward()
        opt.step()

    return run, sum(p.numel() for p in net.parameters())


def main(argv):
    del argv
    import numpy as np
    import torch

    args = types.SimpleNamespace(batch=_BATCH.value, features=_FEATURES.value,
                                 layers=_LAYERS.value, threads=_THREADS.value)

    torch.set_num_threads(args.threads)
    rs = np.random.RandomState(0)
    args.x = (rs.rand(args.batch, 28, 28, 1) < 0.2).astype(np.int32)
    args.y = rs.randint(0, 10, args.batch).astype(np.int32)
    fns = {"jax_taps": build_jax(args, "taps"), "jax_conv": build_jax(args, "conv"),
           "torch": build_torch(args)}
    for fn, _ in fns.values():  # compile + warm-up
        common.times(fn, repeats=0, warmup=2)
    times = {k: [] for k in fns}
    for _ in range(_ROUNDS.value):
        for k, (fn, _) in fns.items():
            times[k].append(statistics.mean(common.times(fn, repeats=_STEPS.value, warmup=0)))
    med = {k: float(np.median(v)) for k, v in times.items()}
    common.emit({
        "benchmark": "gated_pixelcnn_train_step_vs_torch",
        "batch": args.batch, "features": args.features, "layers": args.layers + 1,
        "threads": args.threads,
        "params": {k: int(n) for k, (_, n) in fns.items()},
        "step_ms": {k: round(v * 1e3, 1) for k, v in med.items()},
        "ratio_jax_taps_over_torch": round(med["jax_taps"] / med["torch"], 3),
        "ratio_jax_conv_over_torch": round(med["jax_conv"] / med["torch"], 3),
    })


if __name__ == "__main__":
    common.run(main)
