"""Token-map data (data.kind='tokens') and the token families' shared conditioning."""
import jax
import ml_collections
import numpy as np
import pytest

from argen_jax.data.tokens import build_token_data
from argen_jax.errors import DataError
from argen_jax.models.base import drop_labels


def _write(path, scales=None, k=16, n=(40, 12), **extra):
    rng = np.random.default_rng(0)
    length = sum(s * s for s in scales) if scales else 16
    arrays = {f"{s}_tokens": rng.integers(0, 16, (m, length)).astype(np.int16)
              for s, m in zip(("train", "test"), n, strict=True)}
    arrays.update({f"{s}_labels": rng.integers(0, 3, m).astype(np.int32)
                   for s, m in zip(("train", "test"), n, strict=True)})
    np.savez(path, token_shape=np.asarray([4, 4]), codebook_size=np.int32(k),
             scales=np.asarray(scales or [4]), multiscale=np.bool_(bool(scales)),
             **{**arrays, **extra})
    return str(path)


def _cfg(path, **kw):
    return ml_collections.ConfigDict({"path": path, "batch_size": 8, "eval_batch_size": 5,
                                      **kw})


def test_batches_are_deterministic_and_cover_the_test_split(tmp_path):
    data = build_token_data(_cfg(_write(tmp_path / "t.npz")), seed=3)
    assert data.spec.shape == (16,) and data.spec.levels == 16 and data.spec.grid == (4, 4)
    assert data.spec.kind == "tokens" and data.spec.scales is None
    a, b = data.train_batch(5), build_token_data(_cfg(str(tmp_path / "t.npz")), 3).train_batch(5)
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    assert a["tokens"].dtype == np.int32 and a["tokens"].shape == (8, 16)
    batches = list(data.eval_batches())
    assert sum(int(x["mask"].sum()) for x in batches) == 12
    got = np.concatenate([x["tokens"][x["mask"] > 0] for x in batches])
    np.testing.assert_array_equal(got, data.test_tokens)


def test_multiscale_spec(tmp_path):
    data = build_token_data(_cfg(_write(tmp_path / "m.npz", scales=[1, 2, 4])), 0)
    assert data.spec.shape == (21,) and data.spec.scales == (1, 2, 4)


def test_bad_token_files_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_token_data(_cfg(str(tmp_path / "missing.npz")), 0)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot be read"):
        build_token_data(_cfg(str(bad)), 0)
    np.savez(tmp_path / "partial.npz", train_tokens=np.zeros((2, 4)))
    with pytest.raises(DataError, match="lacks"):
        build_token_data(_cfg(str(tmp_path / "partial.npz")), 0)
    path = _write(tmp_path / "range.npz", k=4)  # tokens reach 15, codebook says 4
    with pytest.raises(DataError, match="outside"):
        build_token_data(_cfg(path), 0)
    path = _write(tmp_path / "len.npz", scales=[1, 2, 4])
    d = dict(np.load(path))
    d["scales"] = np.asarray([1, 2, 3])
    np.savez(path, **d)
    with pytest.raises(DataError, match="imply"):
        build_token_data(_cfg(path), 0)
    d = dict(np.load(_write(tmp_path / "f.npz")))
    np.savez(tmp_path / "float.npz", **{**d, "train_tokens": d["train_tokens"] + 0.5})
    with pytest.raises(DataError, match=r"train_tokens are float64, not integers"):
        build_token_data(_cfg(str(tmp_path / "float.npz")), 0)
    np.savez(tmp_path / "neg.npz", **{**d, "test_labels": d["test_labels"] - 5})
    with pytest.raises(DataError, match=r"neg.npz.*test_labels include -\d+: class labels"):
        build_token_data(_cfg(str(tmp_path / "neg.npz")), 0)


def test_drop_labels_rate():
    labels = np.zeros(20000, np.int32)
    out = np.asarray(drop_labels(jax.random.PRNGKey(0), labels, 0.1, 7))
    assert set(np.unique(out)) == {0, 7}
    assert abs((out == 7).mean() - 0.1) < 0.01
    np.testing.assert_array_equal(drop_labels(jax.random.PRNGKey(0), labels, 0.0, 7), labels)
