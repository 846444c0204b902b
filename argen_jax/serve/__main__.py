"""python -m argen_jax.serve --workdir=RUN --port=8000: serve a trained or converted token run
(LlamaGen c2i, Image GPT) over HTTP with continuous batching; the page is at http://HOST:PORT/.

Exit status 0 after a SIGTERM / Ctrl-C drain, 2 on a user error (one line on stderr).
"""
from __future__ import annotations

import os
import signal
import sys

from absl import app, flags

flags.DEFINE_string("workdir", None, "run directory (trained or converted)")
flags.DEFINE_string("host", "127.0.0.1", "address to listen on")
flags.DEFINE_integer("port", 8000, "port")
flags.DEFINE_integer("slots", 8, "decode slots (images generated at once; 2 KV-cache rows "
                     "each with CFG)")
flags.DEFINE_integer("max_queue", 64, "images waiting for a slot before 429")
flags.DEFINE_integer("max_images", 16, "images per request (n)")
flags.DEFINE_integer("decode_batch", 0, "token maps VQ-decoded per call (0: = slots)")
flags.DEFINE_string("title", "", "page title (default: the run directory's name)")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    from argen_jax import xla_env

    xla_env.apply()
    import uvicorn

    from argen_jax.errors import UserError
    from argen_jax.serve.engine import Engine
    from argen_jax.serve.opener import open_run
    from argen_jax.serve.server import create_app

    f = flags.FLAGS
    try:
        family, params = open_run(f.workdir)
        engine = Engine(family, params, slots=f.slots, max_queue=f.max_queue,
                        max_images=f.max_images, decode_batch=f.decode_batch)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    engine.warmup()
    title = f.title or os.path.basename(os.path.abspath(f.workdir))
    # uvicorn drains on SIGTERM / SIGINT, then re-raises the signal to the handler that was
    # there before it: a no-op one here, so a drained server exits with status 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(create_app(engine, title), host=f.host, port=f.port, log_level="warning",
                timeout_graceful_shutdown=None)
    print("serve: drained, exiting", file=sys.stderr)
    return 0


if __name__ == "__main__":
    app.run(main)
