"""Experiment configs and scripts. The scripts (benchmarks included) run from the repo root as
`python -m experiments.<folder>.<name>`; Python imports this package before a script's own
imports, so the CPU XLA flags the launcher applies are set here, once, before JAX starts
(argen_jax/xla_env.py: a no-op when they are in XLA_FLAGS already, as under the tests' conftest
and the launcher; ARGEN_XLA_CPU_FLAGS=0 turns them off)."""
from argen_jax import xla_env

xla_env.apply()
