"""Load on the serving engine (argen_jax/serve) against its baselines, in one run.

    python -m experiments.benchmarks.speed.serve_load --workdir=RUN --slots=8 --requests=16

starts the server (uvicorn in a thread, 127.0.0.1 only) on RUN and, one image per request:

    saturation     --requests requests sent at once over HTTP (continuous batching)
    one_at_a_time  --serial_requests of them, each sampled alone by the offline sampler
                   (`family.sample` at batch 1 + the VQ decode: LlamaGen's script per request)
    static         the --requests requests in static batches of --slots (wait for a batch, run
                   the offline batched sampler on it, decode it)
    offline        images/s of the offline batched sampler at batch --slots (its fastest
                   batch of the static run)
    half_load      --half_requests Poisson arrivals at 50% of the saturation rate (bounded:
                   a fixed count, each arrival its own connection): latency p50 / p99

and prints one JSON row: images/s, latency p50 / p99, slot occupancy, and the ratios.

    python -m experiments.benchmarks.speed.serve_load --workdir=TINY_RUN --soak=2000

instead soaks the server: --soak requests (valid with random classes / settings / n,
malformed, and streams cancelled after their first event) from 16 client threads; it reports
the status codes, the slots / queue left busy at the end (0) and the RSS at the start and end.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import requests
from absl import flags

from experiments.benchmarks import common

_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (converted or trained)")
_SLOTS = flags.DEFINE_integer("slots", 8, "decode slots = the static / offline batch")
_REQUESTS = flags.DEFINE_integer("requests", 16, "requests at saturation and for static")
_SERIAL = flags.DEFINE_integer("serial_requests", 4, "requests served one at a time")
_HALF = flags.DEFINE_integer("half_requests", 8, "Poisson arrivals at 50% of saturation")
_SOAK = flags.DEFINE_integer("soak", 0, "> 0: soak with this many mixed requests instead")
_SEED = flags.DEFINE_integer("seed", 0, "arrivals, classes and seeds")
flags.mark_flag_as_required("workdir")


def _pct(x, q):
    return float(np.percentile(np.asarray(x), q)) if len(x) else float("nan")


class Server:
    def __init__(self, engine):
        import uvicorn

        from argen_jax.serve.server import create_app

        self.engine = engine
        self.server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1",
                                                    port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def close(self):
        self.server.should_exit = True
        self.thread.join(120)


def _post(url, body, timeout=3600):
    t0 = time.monotonic()
    r = requests.post(f"{url}/v1/images", json=body, timeout=timeout)
    return r.status_code, time.monotonic() - t0, t0


def _arrivals(url, bodies, gaps):
    """Sends bodies[i] after the gaps so far (0: all at once); (latencies, seconds overall)."""
    start = time.monotonic()
    out = [None] * len(bodies)

    def one(i, at):
        time.sleep(max(0.0, start + at - time.monotonic()))
        out[i] = _post(url, bodies[i])

    at = np.cumsum(gaps)
    threads = [threading.Thread(target=one, args=(i, at[i])) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(o[0] == 200 for o in out), [o[0] for o in out]
    end = max(o[2] + o[1] for o in out)
    return [o[1] for o in out], end - start


def load(engine, family, params):
    s, n_req = _SLOTS.value, _REQUESTS.value
    rng = np.random.default_rng(_SEED.value)
    classes = rng.integers(0, engine.num_classes, n_req)
    bodies = [{"class": int(c), "seed": i} for i, c in enumerate(classes)]

    from argen_jax.evaluation.images import to_uint8
    from argen_jax.models.base import images_of

    sample = jax.jit(family.sample)

    def offline(labels, seed0):  # the offline sampler + decode, one batch
        from argen_jax.sampling.loop import sample_keys

        keys = sample_keys(jax.random.PRNGKey(seed0), 0, len(labels))
        tokens = np.asarray(sample(params, keys, jnp.asarray(labels, jnp.int32)))
        return to_uint8(*images_of(family, tokens))  # decoded at this batch, not padded

    srv = Server(engine)
    try:
        t0 = time.monotonic()
        engine.warmup()
        _arrivals(srv.url, bodies[:s], [0.0] * s)  # compiles the engine's programs
        offline(classes[:1], 0)
        offline(classes[:s], 0)
        compile_s = time.monotonic() - t0

        steps0, busy0 = engine.steps_total, engine.busy_slot_steps
        lat_sat, secs = _arrivals(srv.url, bodies, [0.0] * n_req)
        occupancy = (engine.busy_slot_steps - busy0) / max(
            (engine.steps_total - steps0) * s, 1)
        sat = n_req / secs

        t0 = time.monotonic()
        lat_serial = []
        for i in range(_SERIAL.value):
            t1 = time.monotonic()
            offline(classes[i:i + 1], i)
            lat_serial.append(time.monotonic() - t1)
        serial = _SERIAL.value / (time.monotonic() - t0)

        t0 = time.monotonic()
        lat_static, batch_s = [], []
        for b in range(0, n_req, s):
            t1 = time.monotonic()
            offline(classes[b:b + s], b)
            batch_s.append(time.monotonic() - t1)
            lat_static += [time.monotonic() - t0] * len(classes[b:b + s])
        static = n_req / (time.monotonic() - t0)
        offline_ips = s / min(batch_s)

        gaps = rng.exponential(1.0 / (0.5 * sat), _HALF.value)
        gaps[0] = 0.0
        lat_half, _ = _arrivals(srv.url, bodies[:_HALF.value], gaps)
    finally:
        srv.close()
    return dict(
        slots=s, requests=n_req, serial_requests=_SERIAL.value, half_requests=_HALF.value,
        tokens_per_image=engine.num_tokens, cfg_scale=engine.defaults.cfg_scale,
        compile_and_warmup_s=round(compile_s, 1),
        saturation_images_per_s=sat, saturation_p50_s=_pct(lat_sat, 50),
        saturation_p99_s=_pct(lat_sat, 99), slot_occupancy=occupancy,
        one_at_a_time_images_per_s=serial, one_at_a_time_p50_s=_pct(lat_serial, 50),
        static_images_per_s=static, static_p50_s=_pct(lat_static, 50),
        static_p99_s=_pct(lat_static, 99), offline_batched_images_per_s=offline_ips,
        half_load_rate_per_s=0.5 * sat, half_load_p50_s=_pct(lat_half, 50),
        half_load_p99_s=_pct(lat_half, 99),
        continuous_over_one_at_a_time=sat / serial, continuous_over_static=sat / static,
        continuous_over_offline_batched=sat / offline_ips)


BAD_BODIES = ["{oops", "[]", json.dumps({"class": 10 ** 6}), json.dumps({"class": 0, "n": 999}),
              json.dumps({"class": 0, "top_p": 7}), json.dumps({"class": 0, "seed": -1}),
              json.dumps({"class": "cat"}), json.dumps({"klass": 1})]


def soak(engine):
    total, rng = _SOAK.value, random.Random(_SEED.value)
    proc = psutil.Process()
    srv = Server(engine)
    codes: dict[str, int] = {}
    lock = threading.Lock()

    def count(key):
        with lock:
            codes[key] = codes.get(key, 0) + 1

    def one(i):
        try:
            request(i)
        except Exception as e:  # noqa: BLE001 (a client-side failure is counted, not fatal)
            count(f"client_{type(e).__name__}")

    def request(i):
        kind = rng.random()
        if kind < 0.15:
            r = requests.post(f"{srv.url}/v1/images", data=rng.choice(BAD_BODIES), timeout=60)
            count(f"malformed_{r.status_code}")
            return
        body = {"class": rng.randrange(engine.num_classes), "n": rng.randint(1, 3),
                "seed": i, "cfg_scale": rng.choice([1.0, 2.0, 4.0]),
                "temperature": rng.choice([0.7, 1.0]), "top_k": rng.choice([0, 4]),
                "top_p": rng.choice([1.0, 0.9])}
        if kind < 0.3:  # cancelled: a stream dropped after its first event
            with requests.post(f"{srv.url}/v1/images", json=dict(body, stream=True),
                               stream=True, timeout=60) as r:
                next(r.iter_lines())
            count(f"cancelled_{r.status_code}")
            return
        for _ in range(100):
            r = requests.post(f"{srv.url}/v1/images", json=body, timeout=600)
            if r.status_code != 429:
                break
            count("retried_429")
            time.sleep(float(r.headers["Retry-After"]) * rng.random())
        ok = r.status_code == 200 and len(r.json()["images"]) == body["n"]
        count(f"valid_{r.status_code}" if ok or r.status_code != 200 else "valid_bad_body")

    try:
        requests.post(f"{srv.url}/v1/images", json={"class": 0}, timeout=600)  # compile
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(100)))  # warm (every settings path compiled)
        rss0 = proc.memory_info().rss
        t0 = time.monotonic()
        rss = []
        with ThreadPoolExecutor(16) as pool:
            for k, _ in enumerate(pool.map(one, range(100, 100 + total))):
                if k % 500 == 0:
                    rss.append(proc.memory_info().rss)
        secs = time.monotonic() - t0
        time.sleep(1.0)
        left = dict(busy_slots=engine.busy_slots, queue_depth=engine.queue_depth)
        health = requests.get(f"{srv.url}/healthz", timeout=10).status_code
    finally:
        srv.close()
    rss1 = proc.memory_info().rss
    return dict(soak_requests=total, seconds=secs, status=dict(sorted(codes.items())),
                left_at_end=left, healthz_at_end=health, rss_start_mb=rss0 / 2 ** 20,
                rss_end_mb=rss1 / 2 ** 20, rss_every_500_mb=[r / 2 ** 20 for r in rss],
                images_total=engine.images_total, cancelled_slots=engine.cancelled_slots)


def main(argv):
    del argv
    from argen_jax.serve.engine import Engine
    from argen_jax.serve.opener import open_run

    family, params = open_run(_WORKDIR.value)
    engine = Engine(family, params, slots=_SLOTS.value, max_queue=max(64, _REQUESTS.value),
                    max_images=4)
    row = soak(engine) if _SOAK.value else load(engine, family, params)
    common.emit(dict(benchmark="serve_load", workdir=os.path.basename(_WORKDIR.value),
                     device=jax.devices()[0].device_kind, **row))


if __name__ == "__main__":
    common.run(main)
