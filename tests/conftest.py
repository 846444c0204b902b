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

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def rng():
    return jax.random.PRNGKey(0)
