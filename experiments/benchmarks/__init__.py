"""The benchmark suite: `python -m experiments.benchmarks.<kind>.<name>` (common.py says how a
benchmark is written). Python imports this package before any benchmark's own imports, so the
CPU XLA flags the launcher applies are set here, once, before JAX starts (argen_jax/xla_env.py;
a no-op when they are already in XLA_FLAGS, as under the tests' conftest)."""
from argen_jax import xla_env

xla_env.apply()
