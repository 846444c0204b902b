"""Every notebook runs top to bottom (tiny settings, ARGEN_TINY=1) so that none rots, and
the notebook helpers (receptive-field maps, plots) do what the notebooks rely on.

Each notebook runs in its own kernel (a fresh process: no fake devices, plain CPU JAX), with
its own workdir. The kernels share the test suite's persistent compilation cache, so a second
run of the suite compiles little.
"""
import glob
import os
import sys
import tempfile

import numpy as np
import pytest

from argen_jax.evaluation import receptive_field as rf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def kernel_env(workdir: str, tiny: bool = True) -> dict:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the conftest's 8 fake devices: slower, not what users run
    if workdir:
        env["ARGEN_WORKDIR"] = workdir
    if tiny:
        env["JAX_PLATFORMS"] = "cpu"
    env.update(
        ARGEN_TINY="1" if tiny else "0", ARGEN_ROOT=ROOT,
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        PYTHONPATH=os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        JAX_COMPILATION_CACHE_DIR=os.environ.get(
            "ARGEN_TEST_JAX_CACHE", os.path.join(tempfile.gettempdir(), "argen_jax_test_cache")),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
    return env


def execute(path: str, workdir: str, tiny: bool = True):
    """Runs the notebook at `path` in a fresh kernel; returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300 if tiny else 1800, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    # the kernel is this interpreter (ipykernel's native spec), started with `env`
    client.execute(env=kernel_env(workdir, tiny))
    return nb


def outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if kind in o.get("data", {})]


def test_every_notebook_is_tested():
    names = [os.path.basename(p) for p in NOTEBOOKS]
    assert names[:4] == ["01_quickstart.ipynb", "02_sampling.ipynb", "03_wavenet.ipynb",
                         "04_tokens_to_images.ipynb"], names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    nb = execute(path, str(tmp_path / "work"))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    assert outputs(nb, "image/png"), "a notebook should show at least one picture"
    if "wavenet" in path:
        assert outputs(nb, "text/html"), "the WaveNet notebook plays its samples (Audio)"


def test_receptive_field_helpers_find_leaks_and_blind_spots():
    """raster order on [H, W, C]: (i, j, ch) may see earlier pixels and earlier channels of
    its own pixel only; a fake gradient map with a leak and a hole is classified exactly."""
    allowed = rf.raster_allowed((3, 3, 3), (1, 1, 1))
    assert allowed[0].all() and allowed[1, 0].all() and allowed[1, 1, 0]
    assert not allowed[1, 1, 1:].any() and not allowed[1, 2].any() and not allowed[2].any()
    assert rf.raster_allowed((5,), (2,)).tolist() == [True, True, False, False, False]
    g = rf.raster_allowed((4, 4, 1), (2, 2)).astype(float)
    g[0, 3, 0] = 0.0  # a blind pixel
    g[2, 3, 0] = 1.0  # a leak from the future
    assert np.argwhere(rf.blind_spot(g, (2, 2))).tolist() == [[0, 3, 0]]
    assert np.argwhere(rf.leaks(g, (2, 2))).tolist() == [[2, 3, 0]]


def test_input_gradient_is_the_dependency_map():
    import jax.numpy as jnp

    x = jnp.arange(6.0).reshape(1, 6)
    g = rf.input_gradient(lambda v: jnp.cumsum(v * v, axis=1)[:, 3], x)  # d/dx sum_{<=3} x^2
    np.testing.assert_allclose(g, [0, 2, 4, 6, 0, 0])


def test_metric_curves_and_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from argen_jax import viz
    from argen_jax.train.metrics import MetricWriter

    w = MetricWriter(str(tmp_path), tensorboard=False)
    for s in (10, 20, 30):
        w.write(s, {"train/bpd": 1.0 / s})
    w.write(30, {"eval/bpd": 0.05})
    steps, vals = viz.metric_curve(str(tmp_path), "train/bpd")
    assert steps.tolist() == [10, 20, 30] and np.allclose(vals, [0.1, 0.05, 1 / 30])
    ax = viz.plot_metrics(str(tmp_path), ["train/bpd", "eval/bpd"])
    assert len(ax.lines) == 2
    fig = viz.show_image_panels({"a": np.zeros((4, 5, 5, 1), int), "b": np.ones((2, 5, 5, 3),
                                                                                 int)}, levels=2)
    assert len(fig.axes) == 2
    assert sys.modules.get("matplotlib.pyplot") is not None


def render(path: str, workdir: str | None = None) -> None:
    """Executes a notebook with its real (not tiny) settings and saves it with its outputs."""
    import nbformat

    env_tiny = os.environ.get("ARGEN_TINY", "0")
    nb = execute(path, workdir or os.environ.get("ARGEN_WORKDIR", ""), tiny=env_tiny == "1")
    nbformat.write(nb, path)


if __name__ == "__main__":  # python tests/test_notebooks.py notebooks/NAME.ipynb ...
    for p in sys.argv[1:]:
        render(p)
