"""Released LlamaGen and VAR checkpoints as ordinary argen_jax runs, and the papers' FID-50k
protocol. `python -m argen_jax.pretrained {convert,sample,evaluate} --help`:

    convert   LlamaGen (GPT .pt + VQ .pt) or VAR (var_d*.pth + vae .pth) files, or .npz numpy
              state dicts with the same key names (no torch), -> a run directory (config.json,
              data_spec.json, an Orbax checkpoint, the tokenizer as the sub-run `tokenizer/`)
              that `launch/main.py --mode=sample --workdir=RUN` opens like a trained run
    sample    a grid of chosen classes
    evaluate  N samples (50 per class), per-sample seeds, written as resumable shards, packed
              as the ADM sample batch; FID / sFID / IS / precision / recall against an ADM
              reference batch with `evaluation/` (Inception-v3 of pytorch-fid)

Shapes come from the state dicts (`convert.py`); the sampling settings of the papers are the
named presets of `presets.py`.
"""
