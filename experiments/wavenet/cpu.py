"""WaveNet on the espeak-ng speech corpus, sized for a shared 2-core CPU (~1 h of training).

Same arguments as paper.py (tiny, nolocal, noglobal). 8 kHz audio, 10 layers (dilations
1..512, receptive field 1025 samples = 128 ms), 10 ms log-mel frames. A train step (batch
8 x 1600 samples) took ~3.3 s on a 2-core machine shared with other jobs.

    python experiments/wavenet/prepare_speech.py --out=/tmp/wavenet/speech
    python launch/main.py --config=experiments/wavenet/cpu.py --workdir=/tmp/wavenet/cpu
"""
import ml_collections

from argen_jax.config_lib import load_sibling

paper = load_sibling(__file__, "paper")

# What differs from the settings' defaults (see paper.py).
CPU_MODEL = {"residual_channels": 32, "dilation_channels": 32, "skip_channels": 64,
             "out_hidden": 128, "repeats": 1}  # dilations 1..512 once: RF 1025 samples
CPU_DATA = {"sample_rate": 8000,  # telephone-band speech keeps the CPU budget
            "hop": 80, "n_fft": 320,  # 10 ms frames, 40 ms window
            "n_mels": 40, "crop_length": 1600,  # 0.2 s crops
            "batch_size": 8, "eval_length": 8000, "eval_batch_size": 8,  # 1 s eval chunks
            "test_limit": 24}  # 3 held-out sentences per speaker (72 s of speech): cheap eval


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = paper.parse(arg)
    if "tiny" in args:
        return paper.get_config(arg)
    c = paper.make_config(args, CPU_MODEL, CPU_DATA)
    t, s = c.train, c.sample
    t.num_steps = 600
    t.lr = 2e-3  # peak learning rate
    t.warmup_steps = 50
    t.ema_decay = 0.99  # Polyak averaging for eval / sampling (short run: short horizon)
    t.log_every = 25
    t.eval_every = 0  # only at the end
    t.save_every = 50
    t.tensorboard = False
    s.num = 8  # one per speaker
    s.batch_size = 8
    s.length = 8000  # 1 s at 8 kHz
    return c
