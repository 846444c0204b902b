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


def photo_patches_data(batch_size: int, eval_batch_size: int, train_limit: int = 0,
                       test_limit: int = 0) -> ml_collections.ConfigDict:
    """The `data` section for 32x32 RGB patches of the offline photos
    (argen_jax/data/patches.py): the fixed split by source photo, shared by every model."""
    from argen_jax.data.patches import TEST_PHOTOS, TRAIN_PHOTOS

    d = ml_collections.ConfigDict()
    d.kind = "photo_patches"  # registry: argen_jax.data.patches
    d.patch_size = 32  # patch side
    d.train_stride = 16  # train patches overlap by half; test patches never overlap
    d.train_per_photo = 1500  # at most N train patches per photo, spread (0 = all): without
    # it retina and hubble_deep_field (mostly black) give 61% of the train patches
    d.train_photos = TRAIN_PHOTOS  # photo names (argen_jax/data/patches.py)
    d.test_photos = TEST_PHOTOS  # held-out photos (472 non-overlapping test patches)
    d.batch_size = batch_size  # global batch
    d.eval_batch_size = eval_batch_size
    d.train_limit = train_limit  # spread subset of N train patches (0 = all)
    d.test_limit = test_limit  # spread subset of N test patches (0 = all)
    return d


def sample_eval_config(num_samples: int, sample_batch_size: int, feature_batch_size: int = 200,
                       feature_net: str = "") -> ml_collections.ConfigDict:
    """The `eval` section: sample quality in --mode=eval (argen_jax/evaluation/sample_eval.py)."""
    e = ml_collections.ConfigDict()
    e.sample_metrics = False  # also sample (and decode) and score: FD, precision, recall
    e.features = "smallnet"  # smallnet (28x28 feature_net.py; not FID) | inception
    e.feature_net = feature_net  # .npz from experiments/evaluation/train_feature_net.py
    e.inception_weights = ""  # .npz from experiments/evaluation/convert_pt_inception.py
    e.num_samples = num_samples  # sample k is seeded by fold_in(sample_seed, k)
    e.sample_seed = 0
    e.sample_batch_size = sample_batch_size  # speed only: samples do not depend on it
    e.feature_batch_size = feature_batch_size  # images per feature-extraction batch
    e.pr_k = 3  # k of the k-NN manifolds of precision / recall
    e.cache_dir = ""  # test-set features cache ('' = WORKDIR/eval_cache)
    return e
