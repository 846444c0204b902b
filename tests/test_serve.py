"""The serving engine and server (argen_jax/serve): a served image is the offline sampler's
for its seed and settings whatever else is in flight, slots are reused without leaking,
every error path answers its status code, cancelled requests free their slots."""
import base64
import io
import json
import socket
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import requests
from PIL import Image

from argen_jax.data.pipeline import DataSpec
from argen_jax.models.igpt import IGPTFamily
from argen_jax.pretrained import layouts
from argen_jax.pretrained.__main__ import main as pretrained_main
from argen_jax.sampling.loop import sample_keys
from argen_jax.sampling.processors import process_logits
from argen_jax.serve.engine import BadRequest, Draining, Engine, QueueFull
from argen_jax.serve.opener import open_run
from experiments.igpt.mnist import get_config
from tests.model_utils import random_params

VQ = dict(ch=8, ch_mult=(1, 2), nrb=1, z=4, codes=16, dim=4)  # 16 codes, 8x8 images


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A converted random-weight LlamaGen: 3 classes, 16 codes, a 4x4 token map."""
    d = tmp_path_factory.mktemp("serve")
    for name, shapes, seed in (
            ("gpt.npz", layouts.llamagen_gpt_shapes(2, 32, 64, vocab=16, classes=3), 0),
            ("vq.npz", layouts.llamagen_vq_shapes(**VQ), 1)):
        np.savez(d / name, **layouts.random_state_dict(shapes, seed))
    out = str(d / "run")
    assert pretrained_main(["convert", "--system=llamagen", f"--gpt={d / 'gpt.npz'}",
                            f"--vq={d / 'vq.npz'}", f"--out={out}", "--heads=2",
                            "--image_size=8"]) == 0
    return out


@pytest.fixture(scope="module")
def opened(tiny_run):
    return open_run(tiny_run)


def offline(workdir, label, n, seed, **settings):
    """`family.sample` (what --mode=sample / pretrained sample run) with these settings."""
    family, params = open_run(workdir, **settings)
    keys = sample_keys(jax.random.PRNGKey(seed), 0, n)
    return np.asarray(jax.jit(family.sample)(params, keys, jnp.full((n,), label, jnp.int32)))


def test_per_row_processor_settings_equal_the_batch_ones():
    logits = jax.random.normal(jax.random.PRNGKey(0), (4, 64)) * 3
    rows = [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.6), (0.9, 10, 0.8)]
    t, k, p = (np.array(c) for c in zip(*rows, strict=True))
    got = jax.jit(process_logits)(logits, t.astype(np.float32), k.astype(np.int32),
                                  p.astype(np.float32))
    for i, (ti, ki, pi) in enumerate(rows):
        np.testing.assert_array_equal(got[i], process_logits(logits[i:i + 1], ti, ki, pi)[0])


def test_served_images_equal_the_offline_sampler_whatever_is_in_flight(tiny_run, opened):
    settings = dict(cfg_scale=3.0, top_k=5, temperature=0.9)
    want = offline(tiny_run, 1, 2, seed=5, **settings)
    plain = offline(tiny_run, 0, 3, seed=1, top_p=0.8)  # cfg 1: no unconditional half
    engine = Engine(*opened, slots=2, max_queue=16).start()  # 7 images > 2 slots: reuse
    try:
        alone = engine.generate(1, 2, seed=5, timeout=120, **settings)
        others = engine.submit(0, 3, seed=1, settings=engine.settings(top_p=0.8))
        busy = engine.submit(2, 2, seed=9, settings=engine.settings(cfg_scale=6.0))
        time.sleep(0.05)  # the target starts while the others are mid-image
        mixed = engine.submit(1, 2, seed=5, settings=engine.settings(**settings))
        assert all(r.wait(120) for r in (others, busy, mixed))
    finally:
        engine.stop()
    np.testing.assert_array_equal(np.stack(alone.tokens), want)
    np.testing.assert_array_equal(np.stack(mixed.tokens), want)
    np.testing.assert_array_equal(np.stack(others.tokens), plain)
    assert not np.array_equal(np.stack(busy.tokens)[0], want[0])
    assert engine.busy_slots == 0 and engine.queue_depth == 0
    png = Image.open(io.BytesIO(mixed.images[0]))
    assert png.size == (8, 8)
    np.testing.assert_array_equal(np.asarray(png.convert("RGB")), mixed.arrays[0])


def test_a_reused_slot_keeps_nothing_of_its_last_image(tiny_run, opened):
    """One slot: the second request's image is drawn in the cache rows the first filled."""
    want = offline(tiny_run, 2, 1, seed=3, cfg_scale=4.0)
    engine = Engine(*opened, slots=1).start()
    try:
        engine.generate(0, 1, seed=11, timeout=120, cfg_scale=2.0, temperature=1.5)
        cache = jax.tree.leaves(engine.state.cache)
        assert engine.state is not None and any(np.abs(np.asarray(x)).sum() > 0 for x in cache)
        again = engine.generate(2, 1, seed=3, timeout=120, cfg_scale=4.0)
    finally:
        engine.stop()
    np.testing.assert_array_equal(np.stack(again.tokens), want)


def test_igpt_is_served_like_its_sampler():
    cfg = get_config("tiny,cond")
    cfg.model.width, cfg.model.mlp_dim = 16, 32
    cfg.sample.cfg_scale = 2.0
    family = IGPTFamily(cfg, DataSpec((4, 4, 1), 2, 10, "image"))
    params = random_params(family.model, jnp.zeros((1, 16), jnp.int32))["params"]
    keys = sample_keys(jax.random.PRNGKey(4), 0, 2)
    want = jax.jit(family.sample)(params, keys, jnp.array([7, 7]))
    engine = Engine(family, params, slots=3).start()
    try:
        req = engine.generate(7, 2, seed=4, timeout=120)
    finally:
        engine.stop()
    np.testing.assert_array_equal(np.stack(req.tokens).reshape(2, 4, 4, 1), want)
    assert set(np.unique(np.stack(req.arrays))) <= {0, 255}  # binary images as PNG levels


def test_cancelling_frees_the_slots_and_drops_the_queue(opened):
    engine = Engine(*opened, slots=2, max_queue=16).start()
    try:
        engine.generate(0, 1, timeout=120)  # compiled
        events = []
        big = engine.submit(0, 8, seed=1, on_event=lambda k, d: events.append(k))
        while engine.busy_slots == 0:
            time.sleep(0.001)
        big.cancel()
        assert not big.wait(0) and "cancelled" in events
        after = engine.generate(1, 1, seed=2, timeout=120)  # served: the slots came back
        assert after.done and engine.queue_depth == 0 and engine.busy_slots == 0
        assert any(x is None for x in big.images)
    finally:
        engine.stop()


def test_engine_refuses_bad_requests_full_queues_and_new_work_while_draining(opened):
    engine = Engine(*opened, slots=1, max_queue=3, max_images=4)  # not started: queue stays
    for kwargs, words in (
            (dict(label=3), "unknown class 3"), (dict(label=-1), "unknown class"),
            (dict(label=0, n=5), "n=5"), (dict(label=0, n=0), "n=0"),
            (dict(label=0, seed=-2), "seed=-2")):
        with pytest.raises(BadRequest, match=words):
            engine.submit(**kwargs)
    for kwargs, words in ((dict(temperature=0), "temperature"), (dict(top_p=1.5), "top_p"),
                          (dict(top_k=99), "top_k"), (dict(cfg_scale=float("nan")), "cfg")):
        with pytest.raises(BadRequest, match=words):
            engine.settings(**kwargs)
    engine.submit(0, 3)
    with pytest.raises(QueueFull) as e:
        engine.submit(0, 1)
    assert e.value.retry_after >= 1
    engine._stopping = True
    with pytest.raises(Draining):
        engine.submit(0, 1)


# ----------------------------------------------------------------------------- HTTP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving the app in a thread (no signal handlers off the main thread)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(60)


@pytest.fixture(scope="module")
def served(opened):
    from argen_jax.serve.server import create_app

    engine = Engine(*opened, slots=2, max_queue=8, max_images=4)
    with ServerThread(create_app(engine, "tiny")) as srv:
        srv.engine = engine
        yield srv


def sse_events(resp):
    """(event, data) pairs of a text/event-stream response, as they arrive."""
    event = None
    for line in resp.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


def test_http_images_json_and_stream_equal_the_engine(served, tiny_run):
    want = offline(tiny_run, 1, 2, seed=7, cfg_scale=2.5)
    r = requests.post(f"{served.url}/v1/images", json={"class": 1, "n": 2, "seed": 7,
                                                        "cfg_scale": 2.5}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cfg_scale"] == 2.5 and len(body["images"]) == 2
    with requests.post(f"{served.url}/v1/images", json={"class": 1, "n": 2, "seed": 7,
                                                        "cfg_scale": 2.5, "stream": True},
                       stream=True, timeout=120) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(s))
    kinds = [e for e, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("image") == 2
    assert "progress" in kinds
    streamed = {d["index"]: d["png"] for e, d in events if e == "image"}
    assert [streamed[0], streamed[1]] == body["images"]  # same PNGs both ways
    family, params = open_run(tiny_run)
    engine_images = served.engine.decode(want)
    for k, png in enumerate(body["images"]):
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB"))
        np.testing.assert_array_equal(img, engine_images[k])
    assert requests.get(f"{served.url}/healthz", timeout=10).json()["status"] == "ok"
    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    for name in ("argen_queue_depth", "argen_busy_slots", "argen_tokens_per_second",
                 "argen_request_latency_seconds_bucket", "argen_tokens_total"):
        assert name in metrics
    assert 'argen_responses_total{status="200"} 2.0' in metrics
    page = requests.get(served.url, timeout=10).text
    assert "<select id=\"class\">" in page and "/v1/images" in page


@pytest.mark.parametrize("body,words", [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"class": 7}), "unknown class 7"),
    (json.dumps({"class": 0, "n": 5}), "n=5"),
    (json.dumps({"class": 0, "cfg_scale": -1}), "cfg_scale"),
    (json.dumps({"class": 0, "top_p": 0}), "top_p"),
    (json.dumps({"class": 0, "top_k": 1.5}), "top_k must be an integer"),
    (json.dumps({"class": 0, "temperature": "hot"}), "temperature must be a number"),
    (json.dumps({"class": 0, "colour": 1}), "unknown field"),
    (json.dumps({"prompt": "a cat"}), "class-conditional"),
])
def test_http_bad_requests_answer_400_with_one_line(served, body, words):
    r = requests.post(f"{served.url}/v1/images", data=body, timeout=10)
    assert r.status_code == 400
    msg = r.json()["error"]
    assert words in msg and "\n" not in msg


def test_http_full_queue_answers_429_and_draining_503(opened):
    from starlette.testclient import TestClient

    from argen_jax.serve.server import create_app

    engine = Engine(*opened, slots=1, max_queue=2)  # no lifespan: the queue never drains
    client = TestClient(create_app(engine))
    engine.submit(0, 2)
    r = client.post("/v1/images", json={"class": 0})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "queue full" in r.json()["error"]
    engine._stopping = True
    assert client.post("/v1/images", json={"class": 0}).status_code == 503


def test_http_client_disconnect_frees_its_slots(served):
    engine = served.engine
    requests.post(f"{served.url}/v1/images", json={"class": 0}, timeout=120)  # compiled
    fast = engine._step_fn
    engine._step_fn = lambda *a: (time.sleep(0.05), fast(*a))[1]  # 4 images take > 1.6 s
    try:
        for stream in (True, False):
            freed = engine.cancelled_slots
            body = json.dumps({"class": 0, "n": 4, "seed": 1, "stream": stream}).encode()
            sock = socket.create_connection(("127.0.0.1", served.port))
            sock.sendall(b"POST /v1/images HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n"
                         b"Content-Type: application/json\r\n\r\n%s" % (len(body), body))
            deadline = time.time() + 30
            while engine.busy_slots == 0:
                assert time.time() < deadline
                time.sleep(0.001)
            sock.close()  # the client goes away mid-image
            deadline = time.time() + 30
            while engine.busy_slots or engine.queue_depth:
                assert time.time() < deadline, "a disconnected client's slots were not freed"
                time.sleep(0.01)
            assert engine.cancelled_slots == freed + 2  # both slots freed mid-image
    finally:
        engine._step_fn = fast
    r = requests.post(f"{served.url}/v1/images", json={"class": 2}, timeout=120)
    assert r.status_code == 200
