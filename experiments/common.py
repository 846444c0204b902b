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


def parse_args(arg: str | None, known: set[str]) -> set[str]:
    """`get_config`'s comma-separated argument ("tiny,8bit") -> the set of flags; an unknown
    flag is an error that lists the known ones."""
    args = set(filter(None, (arg or "").split(",")))
    if args - known:
        raise ValueError(f"unknown config arguments {sorted(args - known)}; known: {sorted(known)}")
    return args
