"""Config sections every experiment shares, written once so they cannot drift apart."""
import ml_collections


def parallel_config(model: int = 1, rules=None) -> tuple[ml_collections.ConfigDict,
                                                          ml_collections.ConfigDict]:
    """The `mesh` and `sharding` sections: (config.mesh, config.sharding)."""
    mesh = ml_collections.ConfigDict()
    mesh.data = -1  # -1: all devices not used by the other axes
    mesh.model = model  # tensor parallelism (heads, kv_heads, mlp); 1 = none
    mesh.fsdp = 1
    mesh.num_devices = 0  # 0: every device; N: only the first N
    sharding = ml_collections.ConfigDict()
    # logical axis -> mesh axis (argen_jax/parallel/axes.py); None: DEFAULT_RULES
    sharding.rules = rules
    return mesh, sharding
