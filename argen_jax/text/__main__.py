"""python -m argen_jax.text features: a prompt file's T5 caption features, as LlamaGen's.

    python -m argen_jax.text features --t5=flan-t5-xl/ --prompts=prompts.txt --out=X.npz \
        [--dtype=bfloat16] [--batch_size=64] [--max_length=120] [--no_clean]

--t5 is a Hugging Face T5 folder (config.json, spiece.model, model.safetensors or sharded
pytorch_model-*.bin). One prompt a line (empty lines skipped). Writes X.npz with `emb`
[N, L, D] float32 and `mask` [N, L] int32 (LlamaGen's T5Embedder.get_text_embeddings).
Exit status 0 done, 2 a user error (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m argen_jax.text",
                                description="T5 text encoder (LlamaGen's caption features).")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("features", help="a prompt file -> emb / mask .npz")
    f.add_argument("--t5", required=True, help="Hugging Face T5 folder")
    f.add_argument("--prompts", required=True, help="text file, one prompt a line")
    f.add_argument("--out", required=True, help="output .npz")
    f.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                   help="parameters and compute (features are written as float32)")
    f.add_argument("--batch_size", type=int, default=64)
    f.add_argument("--max_length", type=int, default=120)
    f.add_argument("--no_clean", action="store_true",
                   help="lower().strip() only, instead of LlamaGen's caption cleaning")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    from argen_jax import xla_env

    xla_env.apply()
    import numpy as np

    from argen_jax.errors import DataError, UserError
    from argen_jax.text.encoder import TextEncoder

    try:
        try:
            with open(a.prompts, encoding="utf-8") as fh:
                prompts = [line.rstrip("\n") for line in fh if line.strip()]
        except OSError as e:
            raise DataError(f"--prompts={a.prompts!r}: {e.strerror}") from None
        enc = TextEncoder(a.t5, a.dtype, max_length=a.max_length, clean=not a.no_clean)
        emb, mask = enc.features(prompts, a.batch_size)
        np.savez(a.out, emb=emb, mask=mask)
        print(json.dumps({"out": a.out, "prompts": len(prompts), "emb": list(emb.shape),
                          "tokens_mean": float(mask.sum(1).mean()) if len(mask) else 0.0}))
        return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
