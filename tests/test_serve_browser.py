"""End to end: `python -m argen_jax.serve` drains its requests on SIGTERM, and the page works in
a real browser (Debian's chromium driven by Playwright; skipped only when none is installed)."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

from argen_jax.serve.engine import Engine
from argen_jax.serve.server import create_app
from tests.test_serve import ServerThread, free_port, opened, sse_events, tiny_run  # noqa: F401

CHROMIUM = next((p for p in (os.environ.get("ARGEN_CHROMIUM"), "/usr/bin/chromium",
                             shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and os.path.exists(p)), None)


@pytest.mark.slow
def test_sigterm_drains_the_requests_in_flight_then_exits(tiny_run):  # noqa: F811
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "argen_jax.serve", f"--workdir={tiny_run}",
                             f"--port={port}", "--slots=2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "server did not come up"
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        with requests.post(f"{url}/v1/images", json={"class": 1, "n": 6, "stream": True},
                           stream=True, timeout=120) as s:
            events = []
            for kind, _data in sse_events(s):
                events.append(kind)
                if kind == "start":
                    proc.send_signal(signal.SIGTERM)  # mid-request
        assert events.count("image") == 6 and events[-1] == "done"  # drained, not cut
        assert proc.wait(60) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install -y "
                    "chromium; .ci/run installs it)")
def test_the_page_generates_a_grid_in_chromium(opened, tmp_path):  # noqa: F811
    playwright = pytest.importorskip("playwright.sync_api")
    engine = Engine(*opened, slots=4, max_images=8)
    with ServerThread(create_app(engine, "tiny LlamaGen")) as srv, \
            playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 900, "height": 600})
        page.goto(srv.url)
        page.wait_for_function("document.querySelectorAll('#class option').length > 0")
        assert page.locator("#class option").count() == 3  # the run's classes
        page.select_option("#class", "2")
        page.fill("#cfg", "3")
        page.fill("#seed", "5")
        page.fill("#n", "8")
        page.click("#go")
        page.wait_for_function("document.querySelectorAll('.card.done').length == 8",
                               timeout=60000)
        widths = page.eval_on_selector_all(".card.done img", "els => els.map(e => "
                                           "e.naturalWidth)")
        assert widths == [8] * 8  # decoded PNGs
        bars = page.eval_on_selector_all(".card progress", "els => els.map(e => e.value)")
        assert bars == [1] * 8
        assert "done in" in page.inner_text("#status")
        page.fill("#n", "99")  # a bad request shows its one-line reason
        page.click("#go")
        page.wait_for_function("document.getElementById('status').textContent"
                               ".startsWith('error 400')", timeout=10000)
        page.fill("#n", "8")
        page.click("#go")
        page.wait_for_function("document.querySelectorAll('.card.done').length == 16",
                               timeout=60000)
        shot = os.environ.get("ARGEN_SERVE_SCREENSHOT") or str(tmp_path / "page.png")
        page.screenshot(path=shot, full_page=True)
        assert os.path.getsize(shot) > 1000
        browser.close()
    assert engine.busy_slots == 0 and engine.images_total == 16
