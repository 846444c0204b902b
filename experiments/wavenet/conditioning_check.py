"""Does a locally conditioned WaveNet follow its conditioning? A measurable check.

    python -m experiments.wavenet.conditioning_check \
        --local=/tmp/wavenet/cpu_local --uncond=/tmp/wavenet/cpu_nolocal --out=/tmp/wavenet/cond

For every speaker, the first `--seconds` of one held-out test utterance give the log-mel
conditioning. The locally conditioned model (config cpu.py) generates audio from those
features; the model without local conditioning (cpu.py:nolocal, same speaker id) generates
unconditioned audio. We compute the log-mel of each generated waveform with the same
analysis and report, averaged over speakers,
  * L1 log-mel distance (nats, mean over frames and bands) to the conditioning features,
  * Pearson correlation of the per-frame log energy (log of the summed mel power),
for: conditioned samples, unconditioned samples, and, as a reference level, another
held-out utterance of the same speaker. WAVs: OUT/{cond,local,uncond}_<speaker>.wav.
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np
from scipy.special import logsumexp

from argen_jax.data import audio
from argen_jax.heads import mulaw
from argen_jax.io.checkpoint import Checkpointer
from argen_jax.sampling.loop import sample_keys
from argen_jax.train.experiment import Experiment
from experiments.wavenet import cpu


def restore(arg: str, workdir: str):
    config = cpu.get_config(arg)
    config.data.train_limit = config.data.batch_size  # only the test set is used here
    exp = Experiment(config)
    ckpt = Checkpointer(workdir)
    state, _ = ckpt.restore(exp.abstract_state)
    ckpt.close()
    return exp, exp.eval_params(state), int(jax.device_get(state.step))


def logmel(codes, fmt):
    x = mulaw.dequantize(np.asarray(codes, np.int32))
    return audio.log_mel(x, fmt.sample_rate, fmt.hop, fmt.n_fft, fmt.n_mels)


def compare(ref, other):
    l1 = float(np.mean(np.abs(ref - other)))
    e_ref, e_other = logsumexp(ref, axis=-1), logsumexp(other, axis=-1)
    return l1, float(np.corrcoef(e_ref, e_other)[0, 1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--local", default="/tmp/wavenet/cpu_local")
    p.add_argument("--uncond", default="/tmp/wavenet/cpu_nolocal")
    p.add_argument("--out", default="/tmp/wavenet/cond")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    exp_l, params_l, step_l = restore("", args.local)
    exp_u, params_u, step_u = restore("nolocal", args.uncond)
    data, fam_l, fam_u = exp_l.data, exp_l.family, exp_u.family
    fmt = data.fmt
    n = int(round(args.seconds * fmt.sample_rate / fmt.hop)) * fmt.hop
    speakers = np.arange(data.spec.num_classes)
    conds = [data.conditioning(int(s), n, utterance=0) for s in speakers]
    others = [data.conditioning(int(s), n, utterance=1)[1] for s in speakers]
    mel = np.stack([m for m, _ in conds])
    keys = sample_keys(jax.random.PRNGKey(args.seed), 0, len(speakers))
    gen = lambda fam, params, m: jax.jit(  # noqa: E731
        lambda p, k, lab, mm: fam.generate(p, k, n, lab, mm))(params, keys, speakers, m)
    local = np.asarray(gen(fam_l, params_l, mel))
    uncond = np.asarray(gen(fam_u, params_u, None))
    os.makedirs(args.out, exist_ok=True)
    rows = {"local": [], "uncond": [], "other_utterance": []}
    for i, s in enumerate(speakers):
        ref = logmel(conds[i][1], fmt)
        for name, codes in (("local", local[i]), ("uncond", uncond[i]),
                            ("other_utterance", others[i])):
            rows[name].append(compare(ref, logmel(codes, fmt)))
        for name, codes in (("cond", conds[i][1]), ("local", local[i]), ("uncond", uncond[i])):
            audio.write_wav(os.path.join(args.out, f"{name}_{s:02d}.wav"),
                            mulaw.dequantize(np.asarray(codes, np.int32)), fmt.sample_rate)
    result = {"steps": {"local": step_l, "uncond": step_u}, "samples": n,
              "sample_rate": fmt.sample_rate, "speakers": len(speakers)}
    for name, r in rows.items():
        r = np.asarray(r)
        result[name] = {"logmel_l1": float(r[:, 0].mean()),
                        "energy_corr": float(np.nanmean(r[:, 1])),
                        "per_speaker_l1": [round(float(v), 3) for v in r[:, 0]]}
    print(json.dumps(result, indent=1))
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
