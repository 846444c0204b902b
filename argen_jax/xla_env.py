"""XLA flags argen_jax recommends for the CPU backend, applied by an explicit `apply()`.

Nothing happens at import: `launch/main.py` calls `apply()` first thing, and so do the tests'
conftest, the notebooks and the benchmarks that time convolutions; a library user calls it
before the first JAX computation.

YNNPACK's convolution kernels, on by default for `lax.conv` in jaxlib 0.10's CPU backend, are
the slow path on these machines: with `individual_convolution` removed from the YNN fusion
types, XLA's own convolution runs a PixelCNN++ train step ~1.7x faster and the VQ tokenizer
step ~1.5x faster (experiments/benchmarks/{pixelcnnpp_speed,tokenizer_speed}.py), which is
why the convolutional models default to `impl='conv'` (docs/design.md, rule 4).

XLA reads XLA_FLAGS when the first backend is created, so this must run before any JAX
computation; after that the flags are ignored (we log that when JAX was already imported).
The flag is only known to some jaxlib versions and an unknown XLA flag aborts the process,
so it is added only for the versions in `_TESTED_JAXLIB` (a test fails on an upgrade, as a
reminder to re-measure). A flag the user set in XLA_FLAGS always wins;
`ARGEN_XLA_CPU_FLAGS=0` turns ours off.
"""
from __future__ import annotations

import logging
import os
import sys

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
_TESTED_JAXLIB = ((0, 10),)  # (major, minor) versions the flags were measured on


def _jaxlib_version() -> tuple[int, int] | None:
    try:
        from jaxlib import version
    except ImportError:
        return None
    try:
        major, minor = version.__version__.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def flags_to_add(xla_flags: str, jaxlib_version: tuple[int, int] | None,
                 enabled: str = "1") -> list[str]:
    """The CPU flags to append to `xla_flags` (a pure function, for tests)."""
    if enabled.strip().lower() in ("0", "false", "no", "off"):
        return []
    if jaxlib_version is None or jaxlib_version[:2] not in _TESTED_JAXLIB:
        return []
    present = {f.split("=", 1)[0] for f in xla_flags.split()}
    return [f for f in CPU_FLAGS if f.split("=", 1)[0] not in present]


def apply(environ=os.environ) -> list[str]:
    """Append the CPU flags to environ['XLA_FLAGS']; returns the flags added."""
    add = flags_to_add(environ.get("XLA_FLAGS", ""), _jaxlib_version(),
                       environ.get("ARGEN_XLA_CPU_FLAGS", "1"))
    if not add:
        return []
    if "jax" in sys.modules:
        logging.getLogger("argen_jax").info(
            "xla_env.apply() after `import jax`: XLA_FLAGS %s take effect only if no JAX "
            "computation has run yet (else convolutions on CPU may be slower)", " ".join(add))
    environ["XLA_FLAGS"] = " ".join([environ.get("XLA_FLAGS", ""), *add]).strip()
    return add
