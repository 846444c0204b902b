"""Test set-up: 8 fake CPU devices so sharding is tested without accelerators.

XLA_FLAGS must be set before JAX is imported anywhere, which is why this sits at the top of
the conftest (pytest imports it before any test module).
"""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tempfile  # noqa: E402

from argen_jax import xla_env  # noqa: E402

xla_env.apply()  # the CPU flags the launcher applies, before JAX starts (see xla_env.py)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
# Tests build the same tiny programs many times (every train() call re-jits its steps):
# a persistent compilation cache turns the repeats into cache hits.
jax.config.update("jax_compilation_cache_dir",
                  os.environ.get("ARGEN_TEST_JAX_CACHE",
                                 os.path.join(tempfile.gettempdir(), "argen_jax_test_cache")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def rng():
    return jax.random.PRNGKey(0)
