"""Scaling-law fits (evaluation/scaling.py): known exponents recovered from synthetic points
within the bootstrap interval, the held-out prediction, the compute frontier, the plot, and
the sweep description (runs, finished detection, the emitted job array)."""
import os

import numpy as np
import pytest

from argen_jax.evaluation import scaling


@pytest.mark.parametrize("alpha,E,noise", [(0.076, 0.0, 0.01), (0.35, 1.7, 0.005),
                                           (0.25, 0.5, 0.0)])
def test_fit_recovers_known_exponent_within_its_interval(alpha, E, noise):
    rng = np.random.default_rng(1)
    n = np.geomspace(1e4, 1e7, 7)
    loss = (E + 8.0 * n ** -alpha if E else 30.0 * n ** -alpha)
    loss = loss * np.exp(noise * rng.standard_normal(len(n)))
    fit, samples = scaling.fit_power_law(n, loss, saturating=E > 0, bootstrap=300)
    lo, hi = fit.interval["alpha"]
    assert lo - 1e-9 <= alpha <= hi + 1e-9, (alpha, fit)
    assert abs(fit.alpha - alpha) < (0.02 + 3 * noise) * (1 + alpha)
    assert fit.r2 > 0.95 and len(samples) > 250
    if noise == 0:
        assert abs(fit.alpha - alpha) < 1e-4 and abs(fit.E - E) < 1e-4 and hi - lo < 1e-3
    pred = scaling.holdout_prediction(n, loss, saturating=E > 0, bootstrap=50)
    assert abs(pred["error_percent"]) < 3 + 300 * noise


def test_compute_frontier_keeps_the_lower_envelope():
    c = np.array([1, 2, 2, 3, 4, 5])
    loss = np.array([5.0, 4.0, 4.5, 4.2, 3.0, 3.5])
    fc, fl = scaling.compute_frontier(c, loss)
    assert fc.tolist() == [1, 2, 4] and fl.tolist() == [5.0, 4.0, 3.0]


def test_plot_writes_a_png(tmp_path):
    n = np.geomspace(1e3, 1e5, 5)
    fit, samples = scaling.fit_power_law(n, 1 + 5 * n ** -0.3, bootstrap=20)
    path = os.path.join(tmp_path, "fit.png")
    scaling.plot_fit(path, n, 1 + 5 * n ** -0.3, fit, samples, xlabel="N", ylabel="L")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_sweep_runs_finished_detection_and_job_array(tmp_path):
    from experiments.scaling import sweep

    runs = sweep.runs_of("orders_fm", str(tmp_path))
    assert len(runs) == 6 * 2 and len({r["workdir"] for r in runs}) == 12
    run = runs[0]
    assert not sweep.finished(run)
    os.makedirs(run["workdir"])
    with open(os.path.join(run["workdir"], "metrics.jsonl"), "w") as f:
        f.write('{"step": 10, "eval/bpd": 3.0}\n')
        assert not sweep.finished(run)
        f.write(f'{{"step": {run["steps"]}, "eval/bpd": 2.0}}\n')
    assert sweep.finished(run)
    path = sweep.emit_slurm("orders_fm", runs, str(tmp_path))
    text = open(path).read()
    assert "--array=0-11" in text and "launch/slurm.sbatch" in text
    jobs = open(os.path.join(tmp_path, "orders_fm", "jobs.txt")).read().splitlines()
    assert len(jobs) == 12 and "--config.model.order=snake" in jobs[2]
    sizes = sweep.runs_of("llamagen_fm", str(tmp_path))
    assert [r["overrides"]["model.depth"] for r in sizes] == [2, 3, 4, 6, 8]
