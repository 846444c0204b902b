"""The HTTP server around an `Engine` (Starlette on uvicorn).

    POST /v1/images   JSON {"class": c, "n": 4, "seed": 0, "cfg_scale": 4.0, "temperature":
                      1.0, "top_k": 0, "top_p": 1.0, "stream": false} (all but "class"
                      optional; settings default to the run's `config.sample`)
                      -> {"images": [base64 PNG, ...], ...}; with "stream": true, server-sent
                      events instead: `progress` {"index", "done", "total"}, `image`
                      {"index", "png"}, then `done` {"seconds"} (or `error`)
    GET /             the page (class picker, CFG, seed, a progress bar per image)
    GET /v1/info      what the page needs: classes, defaults, limits
    GET /healthz      {"status": "ok", ...} (503 "draining" while shutting down)
    GET /metrics      Prometheus text: queue depth, busy slots, tokens/s, latency histograms

Errors: 400 with {"error": one line} for a bad request (malformed JSON, unknown key or class,
n too large, a setting out of range), 429 with Retry-After when the queue is full, 503 while
draining. A client that disconnects cancels its request (its slots are freed before the next
decode step). SIGTERM (uvicorn's graceful shutdown) stops accepting connections, lets the
responses in flight finish, then stops the engine.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from argen_jax.serve.engine import BadRequest, Draining, Engine, QueueFull

PAGE = os.path.join(os.path.dirname(__file__), "static", "index.html")
INT_KEYS = ("class", "n", "seed", "top_k")
FLOAT_KEYS = ("cfg_scale", "temperature", "top_p")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class EngineCollector:
    """The engine's live numbers at scrape time."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self):
        e = self.engine
        for name, doc, value in (
                ("argen_queue_depth", "images waiting for a slot", e.queue_depth),
                ("argen_busy_slots", "decode slots holding an image", e.busy_slots),
                ("argen_slots", "decode slots", e.num_slots),
                ("argen_tokens_per_second", "tokens drawn per second over the last 10 s",
                 e.tokens_per_second()),
                ("argen_slot_occupancy", "mean busy fraction of the slots over all steps",
                 e.occupancy)):
            yield GaugeMetricFamily(name, doc, value=value)
        for name, doc, value in (("argen_tokens", "tokens drawn", e.tokens_total),
                                 ("argen_images", "images decoded", e.images_total),
                                 ("argen_decode_steps", "decode steps run", e.steps_total)):
            yield CounterMetricFamily(name, doc, value=value)


def parse_request(body: bytes) -> dict:
    """The JSON body of POST /v1/images -> its fields (types checked; ranges are the
    engine's). BadRequest with one line otherwise."""
    try:
        d = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"malformed JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(d, dict):
        raise BadRequest("the body must be a JSON object")
    known = set(INT_KEYS) | set(FLOAT_KEYS) | {"stream", "prompt"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; known: {sorted(known)}")
    if "prompt" in d:
        raise BadRequest("this model is class-conditional: send \"class\", not \"prompt\"")
    for k in INT_KEYS:
        if k in d and (isinstance(d[k], bool) or not isinstance(d[k], int)):
            raise BadRequest(f"{k} must be an integer, got {d[k]!r}")
    for k in FLOAT_KEYS:
        if k in d and (isinstance(d[k], bool) or not isinstance(d[k], (int, float))
                       or not math.isfinite(d[k])):
            raise BadRequest(f"{k} must be a number, got {d[k]!r}")
    if not isinstance(d.get("stream", False), bool):
        raise BadRequest(f"stream must be true or false, got {d['stream']!r}")
    return d


def create_app(engine: Engine, title: str = "argen_jax") -> Starlette:
    """The app; it starts the engine's threads on startup and drains them on shutdown."""
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine))
    latency = Histogram("argen_request_latency_seconds", "POST /v1/images, submit to last "
                        "image", buckets=LATENCY_BUCKETS, registry=registry)
    image_latency = Histogram("argen_image_latency_seconds", "submit to each image",
                              buckets=LATENCY_BUCKETS, registry=registry)
    responses = Counter("argen_responses", "POST /v1/images answers by status", ["status"],
                        registry=registry)
    state = {"draining": False}
    with open(PAGE) as f:
        page = f.read().replace("{{TITLE}}", title)

    def error(status: int, message: str, **headers) -> JSONResponse:
        responses.labels(str(status)).inc()
        return JSONResponse({"error": message}, status, headers=headers or None)

    async def images(request: HttpRequest):
        try:
            d = parse_request(await request.body())
            settings = engine.settings(*(d.get(k) for k in ("cfg_scale", "temperature",
                                                            "top_k", "top_p")))
            loop = asyncio.get_running_loop()
            events: asyncio.Queue = asyncio.Queue()
            job = engine.submit(d.get("class"), d.get("n", 1), d.get("seed", 0), settings,
                                lambda kind, data: loop.call_soon_threadsafe(
                                    events.put_nowait, (kind, data)))
        except BadRequest as e:
            return error(400, str(e))
        except QueueFull as e:
            return error(429, str(e), **{"Retry-After": str(math.ceil(e.retry_after))})
        except Draining as e:
            return error(503, str(e))

        def observe(kind, data):
            if kind == "image":
                image_latency.observe(time.monotonic() - job.submitted)
            elif kind == "done":
                latency.observe(data)
                responses.labels("200").inc()

        info = dict(seed=job.seed, n=job.n, **{"class": d.get("class")},
                    **vars(job.settings))
        if d.get("stream"):
            async def stream():
                try:
                    yield _sse("start", info)
                    while True:
                        kind, data = await events.get()
                        observe(kind, data)
                        if kind == "progress":
                            yield _sse(kind, dict(index=data[0], done=data[1], total=data[2]))
                        elif kind == "image":
                            yield _sse(kind, dict(index=data[0], png=_b64(data[1])))
                        elif kind == "done":
                            yield _sse(kind, dict(seconds=data))
                            return
                        elif kind == "cancelled":
                            yield _sse("error", dict(error="cancelled"))
                            return
                finally:  # the client went away (the generator is cancelled): free the slots
                    if not job.done:
                        job.cancel()

            return StreamingResponse(stream(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})
        try:
            checked = time.monotonic()
            while True:
                try:
                    kind, data = await asyncio.wait_for(events.get(), 0.25)
                except TimeoutError:
                    kind = data = None
                if time.monotonic() - checked >= 0.25:  # the client still there?
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        job.cancel()
                        return Response(status_code=499)
                if kind is None:
                    continue
                observe(kind, data)
                if kind == "done":
                    break
                if kind == "cancelled":
                    return error(503, "request cancelled: " + (engine.failed or
                                                               "the server is stopping"))
        finally:
            if not job.done:
                job.cancel()
        return JSONResponse(dict(info, images=[_b64(p) for p in job.images],
                                 seconds=job.finished - job.submitted))

    async def index(request):
        return HTMLResponse(page)

    async def info(request):
        d = engine.defaults
        return JSONResponse(dict(
            title=title, conditional=engine.conditional, num_classes=engine.num_classes,
            max_images=engine.max_images, slots=engine.num_slots,
            tokens_per_image=engine.num_tokens, vocab=engine.model.vocab_size,
            defaults=dict(cfg_scale=d.cfg_scale, temperature=d.temperature, top_k=d.top_k,
                          top_p=d.top_p)))

    async def healthz(request):
        status = ("failed: " + engine.failed if engine.failed else
                  "draining" if state["draining"] else "ok")
        body = dict(status=status, busy_slots=engine.busy_slots,
                    queue_depth=engine.queue_depth)
        return JSONResponse(body, 200 if status == "ok" else 503)

    async def metrics(request):
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        state["draining"] = True  # uvicorn has let the responses in flight finish
        await asyncio.to_thread(engine.stop, True)

    app = Starlette(routes=[Route("/", index), Route("/v1/info", info),
                            Route("/v1/images", images, methods=["POST"]),
                            Route("/healthz", healthz), Route("/metrics", metrics)],
                    lifespan=lifespan)
    app.state.engine = engine
    return app


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"
