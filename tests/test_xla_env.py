"""argen_jax/xla_env.py: the CPU XLA flags, applied explicitly (conftest applies them)."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from argen_jax import xla_env

FLAG = xla_env.CPU_FLAGS[0]
NAME = FLAG.split("=")[0]


def test_flags_to_add_respects_user_flags_versions_and_opt_out():
    assert xla_env.flags_to_add("", (0, 10)) == [FLAG]
    assert xla_env.flags_to_add("--xla_force_host_platform_device_count=8", (0, 10)) == [FLAG]
    assert xla_env.flags_to_add(f"{NAME}=", (0, 10)) == []  # the user's value wins
    assert xla_env.flags_to_add("", (0, 10), enabled="0") == []
    assert xla_env.flags_to_add("", (9, 9)) == []  # an unknown XLA flag would abort
    assert xla_env.flags_to_add("", None) == []


def test_apply_appends_once_and_keeps_existing_flags():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    if xla_env._jaxlib_version() not in xla_env._TESTED_JAXLIB:
        pytest.fail(f"jaxlib {jax.__version__} is not in xla_env._TESTED_JAXLIB: re-measure "
                    "python -m experiments.benchmarks.speed.pixelcnnpp_speed with and without "
                    "the flags")
    assert xla_env.apply(env) == [FLAG]
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {FLAG}"
    assert xla_env.apply(env) == []  # already there
    assert xla_env.apply({"ARGEN_XLA_CPU_FLAGS": "0"}) == []


def test_importing_the_package_changes_no_environment():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = ("import os, argen_jax, argen_jax.errors, argen_jax.registry; "
            "print(os.environ.get('XLA_FLAGS'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "None"


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU-backend flag")
def test_convolutions_compile_to_xla_not_the_library_fusion():
    x, k = jnp.ones((2, 16, 16, 32)), jnp.ones((3, 3, 32, 32))  # big enough to be offloaded
    conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    hlo = conv.lower(x, k).compile().as_text()
    assert "convolution" in hlo and "ynn_fusion" not in hlo
