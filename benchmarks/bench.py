"""Benchmark for deferware: what the middleware costs per request, next to a
bare app, hand-written minimal middlewares, WebOb/Werkzeug primitives and the
response-callback machinery of Flask and Pyramid; then end to end through
waitress and gunicorn, and a 1 GiB streaming run.

Run ``python benchmarks/bench.py`` (a few minutes), ``--quick`` for a smoke run
(under a minute), ``--json PATH`` to save the results. See ``README.rst`` here
for what each row means. Timing targets are reported as PASS/MISS and never
change the exit status; an error in the script itself does.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from contextvars import ContextVar
from importlib import metadata
from typing import Any, Callable, Iterable

from deferware import DeferMiddleware, after_this_request

# --------------------------------------------------------------------------- the apps

STATUS = "200 OK"
BODY = b"hello"
COOKIE = ("user_lang", "en")

ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8080",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "127.0.0.1:8080",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.input": io.BytesIO(),
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def _write(data: bytes) -> None:
    pass


def server_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    """The no-op start_response every row is driven with."""
    return _write


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # The list literal is built per call, as an app's header list is.
    start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
    return [BODY]


def noop(response: Any) -> None:
    pass


def set_cookie(response: Any) -> None:
    response.set_cookie(*COOKIE)


def noop_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    after_this_request(noop)
    start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
    return [BODY]


def five_noop_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    after_this_request(noop)
    after_this_request(noop)
    after_this_request(noop)
    after_this_request(noop)
    after_this_request(noop)
    start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
    return [BODY]


def cookie_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    after_this_request(set_cookie)
    start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
    return [BODY]


def cookie_environ_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    after_this_request(set_cookie, environ=environ)
    start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
    return [BODY]


class PassThrough:
    """The least a middleware does: wrap start_response."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, headers, exc_info)

        return self.app(environ, wrapped)


_minimal_registry: ContextVar[dict[str, Any]] = ContextVar("bench.minimal")


class MinimalDefer:
    """The idle floor: what any deferring middleware must do when nothing is registered."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        registry = environ["bench.registry"] = {"callbacks": []}
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = (status, headers)
            return _write

        token = _minimal_registry.set(registry)
        try:
            app_iter = self.app(environ, capture)
        finally:
            _minimal_registry.reset(token)
        start_response(captured[0], captured[1])
        return app_iter


def _webob_apps() -> dict[str, Callable[..., Any]]:
    from webob import Response

    def construct(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = [BODY]
        Response(
            status=STATUS,
            headerlist=[("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")],
            app_iter=body,
        )
        start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
        return body

    def construct_cookie(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = [BODY]
        Response(
            status=STATUS,
            headerlist=[("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")],
            app_iter=body,
        ).set_cookie(*COOKIE)
        start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
        return body

    def construct_header(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = [BODY]
        Response(
            status=STATUS,
            headerlist=[("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")],
            app_iter=body,
        ).headers["X-Deferred"] = "yes"
        start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
        return body

    return {
        "webob_construct": construct,
        "webob_set_cookie": construct_cookie,
        "webob_header": construct_header,
    }


def _werkzeug_apps() -> dict[str, Callable[..., Any]]:
    from werkzeug.wrappers import Response

    def construct(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        Response(BODY, status=200, content_type="text/plain; charset=utf-8")
        start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
        return [BODY]

    def construct_cookie(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        Response(BODY, status=200, content_type="text/plain; charset=utf-8").set_cookie(*COOKIE)
        start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
        return [BODY]

    return {"werkzeug_construct": construct, "werkzeug_set_cookie": construct_cookie}


def _flask_set_cookie(response: Any) -> Any:
    response.set_cookie(*COOKIE)
    return response


def _flask_apps() -> dict[str, Callable[..., Any]]:
    import flask

    plain = flask.Flask("bench_flask_plain")
    cookie = flask.Flask("bench_flask_cookie")

    @plain.route("/")
    def index() -> Any:
        return "hello"

    @cookie.route("/")
    def index_cookie() -> Any:
        flask.after_this_request(_flask_set_cookie)
        return "hello"

    return {"flask": plain.wsgi_app, "flask_set_cookie": cookie.wsgi_app}


def _pyramid_set_cookie(request: Any, response: Any) -> None:
    response.set_cookie(*COOKIE)


def _pyramid_plain_view(request: Any) -> Any:
    from pyramid.response import Response

    return Response(BODY, content_type="text/plain")


def _pyramid_cookie_view(request: Any) -> Any:
    from pyramid.response import Response

    request.add_response_callback(_pyramid_set_cookie)
    return Response(BODY, content_type="text/plain")


def _pyramid_apps() -> dict[str, Callable[..., Any]]:
    from pyramid.config import Configurator

    apps = {}
    for name, view in (("pyramid", _pyramid_plain_view), ("pyramid_set_cookie", _pyramid_cookie_view)):
        with Configurator() as config:
            config.add_route("home", "/")
            config.add_view(view, route_name="home")
            apps[name] = config.make_wsgi_app()
    return apps


# --------------------------------------------------------------------------- micro rows

#: (name, description, expects a user_lang cookie)
ROWS: list[tuple[str, str, bool]] = [
    ("bare", "plain WSGI app: list body, start_response with two headers", False),
    ("passthrough", "minimal middleware wrapping start_response", False),
    ("minimal_defer", "minimal deferring middleware (registry, ContextVar, delayed start_response)", False),
    ("defer_idle", "DeferMiddleware, nothing registered", False),
    ("defer_noop", "DeferMiddleware, one no-op after_this_request callback", False),
    ("defer_cookie", "DeferMiddleware, one set_cookie callback (context form)", True),
    ("defer_cookie_environ", "DeferMiddleware, one set_cookie callback (environ= form)", True),
    ("defer_five_noop", "DeferMiddleware, five no-op callbacks", False),
    ("webob_construct", "bare + webob.Response(status=, headerlist=, app_iter=)", False),
    ("webob_set_cookie", "bare + webob.Response(...) + .set_cookie(user_lang=en)", False),
    ("werkzeug_construct", "bare + werkzeug Response(body, status, content_type)", False),
    ("werkzeug_set_cookie", "bare + werkzeug Response(...) + .set_cookie(user_lang=en)", False),
    ("flask", "Flask, one route returning a string", False),
    ("flask_set_cookie", "Flask, same route + flask.after_this_request(set_cookie)", True),
    ("pyramid", "Pyramid, one route returning a Response", False),
    ("pyramid_set_cookie", "Pyramid, same route + request.add_response_callback(set_cookie)", True),
]


def build_row_apps() -> dict[str, Callable[..., Any]]:
    apps: dict[str, Callable[..., Any]] = {
        "bare": bare_app,
        "passthrough": PassThrough(bare_app),
        "minimal_defer": MinimalDefer(bare_app),
        "defer_idle": DeferMiddleware(bare_app),
        "defer_noop": DeferMiddleware(noop_app),
        "defer_cookie": DeferMiddleware(cookie_app),
        "defer_cookie_environ": DeferMiddleware(cookie_environ_app),
        "defer_five_noop": DeferMiddleware(five_noop_app),
    }
    apps.update(_webob_apps())
    apps.update(_werkzeug_apps())
    apps.update(_flask_apps())
    apps.update(_pyramid_apps())
    return apps


def drive_once(app: Callable[..., Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """One request as a server drives it, recording what the server would see."""
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen[:] = (status, list(headers))
        return _write

    body = app(ENVIRON.copy(), start_response)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return seen[0], seen[1], data


def check_rows(apps: dict[str, Callable[..., Any]]) -> None:
    """Refuse to time a row that does not produce the response it claims to."""
    for name, _description, wants_cookie in ROWS:
        status, headers, data = drive_once(apps[name])
        cookies = [value for key, value in headers if key.lower() == "set-cookie"]
        if not status.startswith("200") or data != BODY:
            raise RuntimeError(f"row {name!r} answered {status!r} with {data!r}")
        has_cookie = any(value.startswith("user_lang=en") for value in cookies)
        if has_cookie != wants_cookie:
            raise RuntimeError(
                f"row {name!r}: Set-Cookie headers {cookies!r}, expected cookie={wants_cookie}"
            )


class _Task:
    """A server's per-request object as waitress has it: it holds the environ, and
    the ``write`` that start_response returns is its bound method."""

    __slots__ = ("environ",)

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return self.write

    def write(self, data: bytes) -> None:
        pass


def cyclic_garbage(app: Callable[..., Any], n: int = 200) -> float:
    """Objects per request left as cyclic garbage (freed only by the gc) when
    driven by a waitress-like server; 0 for an app that frees everything at once."""
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            task = _Task()
            task.environ = environ = ENVIRON.copy()
            body = app(environ, task.start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        del task, environ, body
        return gc.collect() / n
    finally:
        gc.enable()


def make_loop(app: Callable[..., Any]) -> Callable[[int], int]:
    """The timed loop for one row: *n* full requests, in ns."""

    def loop(
        n: int,
        template: dict[str, Any] = ENVIRON,
        start_response: Callable[..., Any] = server_start_response,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> int:
        iterations = range(n)
        start = clock()
        for _ in iterations:
            body = app(template.copy(), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return clock() - start

    return loop


def calibrate(loop: Callable[[int], int], budget_s: float) -> int:
    """Loops per repetition so that one repetition of this row takes about *budget_s*.

    With the gc off, as in the timed loops, and from the fastest of three tries:
    one collection (or any other pause) must not make a fast row look slow and
    leave it with too few loops to time.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        n = 1
        while loop(n) < 0.02e9 and n < 1 << 24:
            n *= 4
        per_call = min(loop(n) for _ in range(3)) / n
    finally:
        if gc_was_enabled:
            gc.enable()
    return max(1, int(budget_s * 1e9 / per_call))


def run_micro(apps: dict[str, Callable[..., Any]], reps: int, budget_s: float) -> dict[str, dict[str, Any]]:
    names = [name for name, _d, _c in ROWS]
    loops = {name: make_loop(apps[name]) for name in names}
    counts = {}
    for name in names:
        loops[name](200)  # warm up (first-call caches, imports)
        counts[name] = calibrate(loops[name], budget_s)
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    try:
        for rep in range(reps):
            # Rotate the starting row so that no row always runs first (or last).
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                gc.collect()
                gc.disable()  # as timeit does: collections land on whichever row is unlucky
                elapsed = loops[name](counts[name])
                gc.enable()
                samples[name].append(elapsed / counts[name])
    finally:
        if gc_was_enabled:
            gc.enable()
    garbage = {name: cyclic_garbage(apps[name]) for name in names}
    bare_min = min(samples["bare"])
    bare_median = statistics.median(samples["bare"])
    results = {}
    for name, description, _cookie in ROWS:
        values = samples[name]
        results[name] = {
            "description": description,
            "loops": counts[name],
            "reps": reps,
            "min_ns": min(values),
            "median_ns": statistics.median(values),
            "overhead_min_ns": min(values) - bare_min,
            "overhead_median_ns": statistics.median(values) - bare_median,
            "cyclic_garbage_per_request": garbage[name],
            "samples_ns": values,
        }
    return results


def compute_ratios(rows: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    def cost(stat: str) -> Callable[[str, str], float]:
        return lambda a, b: rows[a][stat] - rows[b][stat]

    ratios = []
    views: dict[str, Any] = {}
    for stat in ("min_ns", "median_ns"):
        d = cost(stat)
        webob_construct = d("webob_construct", "bare")
        webob_cookie = d("webob_set_cookie", "webob_construct")
        werkzeug_cookie = d("werkzeug_set_cookie", "werkzeug_construct")
        ours = d("defer_cookie", "defer_idle")
        ours_environ = d("defer_cookie_environ", "defer_idle")
        flask = d("flask_set_cookie", "flask")
        pyramid = d("pyramid_set_cookie", "pyramid")
        noop_marginal = d("defer_noop", "defer_idle")
        key = stat[: -len("_ns")]
        entries = [
            ("idle", "(defer_idle - bare) / (minimal_defer - bare)",
             d("defer_idle", "bare"), d("minimal_defer", "bare"), 1.15),
            ("one_noop_callback", "(defer_noop - defer_idle) / (webob_construct - bare)",
             noop_marginal, webob_construct, 0.5),
            ("set_cookie_vs_flask", "(defer_cookie - defer_idle) / (flask_set_cookie - flask)",
             ours, flask, 0.6),
            ("set_cookie_vs_pyramid", "(defer_cookie - defer_idle) / (pyramid_set_cookie - pyramid)",
             ours, pyramid, 0.6),
            ("set_cookie_environ_vs_flask",
             "(defer_cookie_environ - defer_idle) / (flask_set_cookie - flask)", ours_environ, flask, 0.6),
            ("set_cookie_environ_vs_pyramid",
             "(defer_cookie_environ - defer_idle) / (pyramid_set_cookie - pyramid)",
             ours_environ, pyramid, 0.6),
        ]  # fmt: skip
        for index, (name, formula, numerator, denominator, target) in enumerate(entries):
            value = numerator / denominator if denominator > 0 else float("inf")
            if stat == "min_ns":
                ratios.append({"name": name, "formula": formula, "target_max": target})
            ratios[index][f"value_{key}"] = value
            ratios[index][f"numerator_{key}_ns"] = numerator
            ratios[index][f"denominator_{key}_ns"] = denominator
            if stat == "min_ns":
                ratios[index]["pass"] = value <= target
        views[key] = {
            "webob_set_cookie_ns": webob_cookie,
            "werkzeug_set_cookie_ns": werkzeug_cookie,
            "deferware": {"marginal_ns": ours, "own_overhead_ns": ours - webob_cookie},
            "deferware_environ_form": {
                "marginal_ns": ours_environ,
                "own_overhead_ns": ours_environ - webob_cookie,
            },
            "flask": {"marginal_ns": flask, "own_overhead_ns": flask - werkzeug_cookie},
            "pyramid": {"marginal_ns": pyramid, "own_overhead_ns": pyramid - webob_cookie},
            "per_callback_five_noop_ns": d("defer_five_noop", "defer_idle") / 5,
        }
    return ratios, views


def print_micro(rows: dict[str, dict[str, Any]], ratios: list[dict[str, Any]], views: dict[str, Any]) -> None:
    reps = rows["bare"]["reps"]
    print(f"\nPer request (ns), {reps} interleaved repetitions; overhead = row - bare")
    print(
        f"{'row':<22} {'loops':>8} {'min':>9} {'median':>9} {'overhead':>9} {'(median)':>9} "
        f"{'gc/req':>6}  description"
    )
    for name, row in rows.items():
        print(
            f"{name:<22} {row['loops']:>8} {row['min_ns']:>9.0f} {row['median_ns']:>9.0f} "
            f"{row['overhead_min_ns']:>9.0f} {row['overhead_median_ns']:>9.0f} "
            f"{row['cyclic_garbage_per_request']:>6.1f}  {row['description']}"
        )
    print(
        "gc/req: objects per request left as cyclic garbage when the server's write() is a bound "
        "method of a task holding the environ (as in waitress); timed loops run with the gc off, as timeit's"
    )
    print("\nMarginal costs (ns, min / median)")
    mn, md = views["min"], views["median"]
    lines = [
        ("one no-op callback (defer_noop - defer_idle)",
         rows["defer_noop"]["min_ns"] - rows["defer_idle"]["min_ns"],
         rows["defer_noop"]["median_ns"] - rows["defer_idle"]["median_ns"]),
        ("per callback, five no-ops ((five - idle) / 5)",
         mn["per_callback_five_noop_ns"], md["per_callback_five_noop_ns"]),
        ("webob.Response construction", rows["webob_construct"]["overhead_min_ns"],
         rows["webob_construct"]["overhead_median_ns"]),
        ("WebOb set_cookie itself", mn["webob_set_cookie_ns"], md["webob_set_cookie_ns"]),
        ("Werkzeug set_cookie itself", mn["werkzeug_set_cookie_ns"], md["werkzeug_set_cookie_ns"]),
    ]  # fmt: skip
    for label, a, b in lines:
        print(f"  {label:<48} {a:>8.0f} / {b:>8.0f}")
    print("\nOne set_cookie callback: marginal cost, and minus the cookie-setting all pay (ns, min / median)")
    print(f"  {'':<24} {'marginal':>19} {'own overhead':>19}  (own = marginal - its library's set_cookie)")
    for label, key in (
        ("deferware (context)", "deferware"),
        ("deferware (environ=)", "deferware_environ_form"),
        ("Flask", "flask"),
        ("Pyramid", "pyramid"),
    ):
        print(
            f"  {label:<24} {mn[key]['marginal_ns']:>8.0f} / {md[key]['marginal_ns']:>8.0f} "
            f"{mn[key]['own_overhead_ns']:>8.0f} / {md[key]['own_overhead_ns']:>8.0f}"
        )
    print("\nRatios (verdict on min; median shown for stability)")
    print(f"  {'ratio':<30} {'min':>7} {'median':>7} {'target':>8}  verdict  formula")
    for ratio in ratios:
        verdict = "PASS" if ratio["pass"] else "MISS"
        print(
            f"  {ratio['name']:<30} {ratio['value_min']:>7.3f} {ratio['value_median']:>7.3f} "
            f"{'<= ' + format(ratio['target_max'], 'g'):>8}  {verdict:<7}  {ratio['formula']}"
        )


def profile_row(apps: dict[str, Callable[..., Any]], name: str, n: int) -> None:
    import cProfile
    import pstats

    loop = make_loop(apps[name])
    loop(200)
    profiler = cProfile.Profile()
    profiler.runcall(loop, n)
    print(f"\ncProfile of {n} requests of row {name!r}:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


# --------------------------------------------------------------------------- streaming apps

CHUNK_SIZE = 64 * 1024
CHUNK = bytes(CHUNK_SIZE)  # one preallocated chunk, yielded again and again


def add_stream_header(response: Any) -> None:
    response.headers["X-Deferred"] = "yes"


def header_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    after_this_request(add_stream_header)
    start_response(STATUS, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")])
    return [BODY]


def bare_header_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The bare app sending the header the header callback adds, itself: the same
    response on the wire, so the server does the same work for both."""
    start_response(
        STATUS,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5"), ("X-Deferred", "yes")],
    )
    return [BODY]


def bare_cookie_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The bare app setting the same cookie itself, with WebOb, without deferware:
    what the cookie costs whoever sets it."""
    from webob.cookies import make_cookie

    cookie = make_cookie(COOKIE[0], COOKIE[1].encode(), path="/")
    start_response(
        STATUS,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5"), ("Set-Cookie", cookie)],
    )
    return [BODY]


def make_stream_app(total: int, register: bool) -> Callable[..., Any]:
    """A lazily-starting generator app: start_response runs inside the generator."""
    count = total // CHUNK_SIZE

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def generate() -> Iterable[bytes]:
            if register:
                after_this_request(add_stream_header)
            start_response(
                STATUS,
                [("Content-Type", "application/octet-stream"), ("Content-Length", str(count * CHUNK_SIZE))],
            )
            chunk = CHUNK
            for _ in range(count):
                yield chunk

        return generate()

    return app


def stream_once(app: Callable[..., Any], copy: bool) -> dict[str, float]:
    """Drive one streaming request; *copy* copies each chunk into a buffer, as a
    server's socket write would; otherwise only lengths are summed."""
    sink = memoryview(bytearray(CHUNK_SIZE))
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen[:] = (status, headers)
        return _write

    clock = time.perf_counter_ns
    start = clock()
    body = app(ENVIRON.copy(), start_response)
    iterator = iter(body)
    first = next(iterator)
    first_at = clock()
    received = len(first)
    if copy:
        for chunk in iterator:
            sink[:] = chunk
            received += len(chunk)
    else:
        for chunk in iterator:
            received += len(chunk)
    end = clock()
    close = getattr(body, "close", None)
    if close is not None:
        close()
    if not seen or not seen[0].startswith("200"):
        raise RuntimeError(f"streaming app answered {seen!r}")
    return {
        "ttfb_ns": first_at - start,
        "seconds": (end - start) / 1e9,
        "bytes": received,
        "gib_per_s": received / (end - start) * 1e9 / 2**30,
        "deferred_header": any(k == "X-Deferred" for k, _v in seen[1]),
    }


def stream_peak_memory(app: Callable[..., Any]) -> int:
    """tracemalloc peak during one streamed request, minus what was traced before it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        stream_once(app, copy=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - before


def run_stream_inprocess(total: int, reps: int) -> dict[str, Any]:
    variants = {
        "bare": make_stream_app(total, register=False),
        "defer_idle": DeferMiddleware(make_stream_app(total, register=False)),
        "defer_header_callback": DeferMiddleware(make_stream_app(total, register=True)),
    }
    results: dict[str, Any] = {name: {"copy": [], "null": []} for name in variants}
    for app in variants.values():
        stream_once(app, copy=False)  # warm up
    for rep in range(reps):
        names = list(variants)
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            for mode in ("copy", "null"):
                results[name][mode].append(stream_once(variants[name], copy=mode == "copy"))
    summary: dict[str, Any] = {"bytes": total, "chunk_size": CHUNK_SIZE, "reps": reps, "variants": {}}
    for name in variants:
        copy_runs, null_runs = results[name]["copy"], results[name]["null"]
        if (name == "defer_header_callback") != all(run["deferred_header"] for run in copy_runs):
            raise RuntimeError(f"streaming variant {name!r}: deferred header presence is wrong")
        summary["variants"][name] = {
            "ttfb_min_ns": min(run["ttfb_ns"] for run in copy_runs + null_runs),
            "ttfb_median_ns": statistics.median(run["ttfb_ns"] for run in copy_runs + null_runs),
            "copy_gib_per_s_best": max(run["gib_per_s"] for run in copy_runs),
            "null_gib_per_s_best": max(run["gib_per_s"] for run in null_runs),
            "null_ns_per_chunk_best": min(run["seconds"] for run in null_runs) * 1e9 / (total // CHUNK_SIZE),
            "peak_memory_growth_bytes": stream_peak_memory(variants[name]),
        }
    bare = summary["variants"]["bare"]
    for row in summary["variants"].values():
        row["copy_throughput_vs_bare"] = row["copy_gib_per_s_best"] / bare["copy_gib_per_s_best"]
        row["null_throughput_vs_bare"] = row["null_gib_per_s_best"] / bare["null_gib_per_s_best"]
    return summary


# --------------------------------------------------------------------------- servers


def build_routes(stream_bytes: int) -> dict[str, Callable[..., Any]]:
    webob = _webob_apps()
    return {
        # For instructions.py: what WebOb's own header setting costs, without deferware.
        "/webob": webob["webob_construct"],
        "/webob-header": webob["webob_header"],
        "/bare": bare_app,
        "/passthrough": PassThrough(bare_app),
        "/minimal-defer": MinimalDefer(bare_app),
        "/idle": DeferMiddleware(bare_app),
        "/noop": DeferMiddleware(noop_app),
        "/header": DeferMiddleware(header_app),
        "/bare-header": bare_header_app,
        "/bare-cookie": bare_cookie_app,
        "/cookie": DeferMiddleware(cookie_app),
        "/stream/bare": make_stream_app(stream_bytes, register=False),
        "/stream/wrapped": DeferMiddleware(make_stream_app(stream_bytes, register=True)),
    }


def make_dispatcher(stream_bytes: int) -> Callable[..., Any]:
    routes = build_routes(stream_bytes)

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return routes[environ["PATH_INFO"]](environ, start_response)

    return dispatch


def serve(kind: str, fd: int, stream_bytes: int) -> None:
    """Child-process mode: serve the routes on the inherited listening socket *fd*."""
    app = make_dispatcher(stream_bytes)
    if kind == "waitress":
        import waitress

        sock = socket.socket(fileno=fd)
        waitress.serve(app, sockets=[sock], threads=4, _quiet=True)
    elif kind == "gunicorn":
        from gunicorn.app.base import BaseApplication

        class Server(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                settings = {
                    "bind": [f"fd://{fd}"],
                    "workers": 1,
                    "worker_class": "gthread",
                    "threads": 4,
                    "graceful_timeout": 2,
                    "loglevel": "warning",
                    "control_socket_disable": True,
                }
                for key, value in settings.items():
                    self.cfg.set(key, value)

            def load(self) -> Callable[..., Any]:
                return app

        Server().run()
    else:
        raise SystemExit(f"unknown server {kind!r}")


class ServerProcess:
    """A server subprocess on 127.0.0.1, on a port the OS picked; always stopped."""

    def __init__(
        self,
        kind: str,
        stream_bytes: int,
        cpus: set[int] | None = None,
        wrapper: tuple[str, ...] = (),
        ready_timeout: float = 20.0,
    ) -> None:
        self.kind = kind
        self.stream_bytes = stream_bytes
        self.cpus = cpus
        self.wrapper = wrapper  # a command the server runs under (valgrind, for instructions.py)
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()

    def __enter__(self) -> ServerProcess:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            self.proc = subprocess.Popen(
                [*self.wrapper, sys.executable, os.path.abspath(__file__), "--serve", self.kind,
                 "--fd", str(fd), "--stream-bytes", str(self.stream_bytes)],
                pass_fds=(fd,),
                preexec_fn=_pinned_to(self.cpus),
                stdout=self.log,
                stderr=self.log,
                start_new_session=True,  # its own process group: gunicorn's worker is stopped with it
            )  # fmt: skip
        except BaseException:
            listener.close()
            self.__exit__()
            raise
        listener.close()  # the child holds its own copy
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def cpu_seconds(self) -> float:
        """User+system CPU of the server's processes (its session), from /proc; 0 elsewhere."""
        assert self.proc is not None
        total = 0
        try:
            entries = os.listdir("/proc")
        except OSError:
            return 0.0
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After the ")": state ppid pgrp session ... utime (12th) stime (13th).
            if int(fields[3]) == self.proc.pid:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            try:
                status, _headers, _body = http_get(self.port, "/bare", timeout=1.0)
                if status == 200:
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        self.log.seek(0)
        output = self.log.read().decode(errors="replace")
        raise RuntimeError(f"{self.kind} did not become ready ({last!r}); its output:\n{output}")

    def __exit__(self, *exc_info: object) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                proc.wait(timeout=10)
        self.log.close()


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes, int]:
    """Read one response with a Content-Length from *sock*; *buffer* keeps leftovers.
    Returns (status, head, body length) and consumes the response from *buffer*."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection mid-response")
        buffer += data
    head = bytes(buffer[:end])
    match = _CONTENT_LENGTH.search(head)
    if match is None:
        raise RuntimeError(f"response without Content-Length: {head!r}")
    need = end + 4 + int(match.group(1))
    while len(buffer) < need:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection mid-body")
        buffer += data
    del buffer[:need]
    return int(head[9:12]), head, int(match.group(1))


def http_get(port: int, path: str, timeout: float) -> tuple[int, bytes, int]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return read_response(sock, bytearray())


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(client CPUs, server CPUs): one core for the server, the rest for the
    client, so that neither steals the other's; None with fewer than 2 CPUs."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return set(cpus[:-1]), {cpus[-1]}


def _pinned_to(cpus: set[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_COUNT = re.compile(r"(\d+) requests in")


def load_wrk(
    port: int, path: str, duration: float, connections: int, cpus: set[int] | None
) -> dict[str, float]:
    """Keep-alive GETs from wrk (a C load generator) for *duration* seconds."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
        f"http://127.0.0.1:{port}{path}",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, preexec_fn=_pinned_to(cpus)
    )
    out = done.stdout
    rps = _WRK_RPS.search(out)
    count = _WRK_COUNT.search(out)
    if done.returncode != 0 or rps is None or count is None:
        raise RuntimeError(f"wrk on {path} failed ({done.returncode}): {out}{done.stderr}")
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk on {path} saw errors: {out}")
    return {"requests": int(count.group(1)), "seconds": int(count.group(1)) / float(rps.group(1)),
            "rps": float(rps.group(1))}  # fmt: skip


def load(
    port: int, path: str, duration: float, connections: int, cpus: set[int] | None = None
) -> dict[str, float]:
    """Keep-alive GETs on *connections* connections for *duration* seconds; returns req/s.

    With wrk on the PATH (``apt install wrk``) it generates the load; otherwise
    Python threads here do, which costs the client more CPU than the server spends
    (so req/s then say less about the server). *cpus*: where the client runs.
    """
    if shutil.which("wrk"):
        return load_wrk(port, path, duration, connections, cpus)
    if cpus is None:
        return load_threads(port, path, duration, connections)
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        return load_threads(port, path, duration, connections)
    finally:
        os.sched_setaffinity(0, saved)


def load_threads(port: int, path: str, duration: float, connections: int) -> dict[str, float]:
    """Keep-alive GETs on *connections* threads for *duration* seconds; returns req/s."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    counts = [0] * connections
    errors: list[BaseException] = []
    barrier = threading.Barrier(connections + 1)
    stop_at = [0.0]

    def worker(index: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buffer = bytearray()
                barrier.wait(timeout=10)
                clock = time.perf_counter
                done = 0
                while clock() < stop_at[0]:
                    sock.sendall(request)
                    status, _head, _length = read_response(sock, buffer)
                    if status != 200:
                        raise RuntimeError(f"GET {path} answered {status}")
                    done += 1
                counts[index] = done
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + 3600  # replaced below, once every connection is open
    try:
        barrier.wait(timeout=15)
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    stop_at[0] = start + duration
    for thread in threads:
        thread.join(timeout=duration + 30)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"load on {path} failed: {errors[0]!r}") from errors[0]
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"load on {path}: a client thread did not finish")
    return {"requests": sum(counts), "seconds": elapsed, "rps": sum(counts) / elapsed}


E2E_PATHS = {
    "bare": "/bare",
    "passthrough": "/passthrough",
    "minimal_defer": "/minimal-defer",
    "defer_idle": "/idle",
    "defer_noop": "/noop",
    "bare_header": "/bare-header",
    "defer_header": "/header",
    "bare_set_cookie": "/bare-cookie",
    "defer_set_cookie": "/cookie",
}
#: (row, baseline, judged): each ratio is reported; the target is judged on the
#: like-for-like ones, where the wrapped app and its baseline send the same
#: response (so the server's work is the same and only deferware differs).
E2E_RATIOS = (
    ("defer_noop", "bare", True),
    ("defer_header", "bare_header", True),
    ("defer_set_cookie", "bare_set_cookie", True),
    ("defer_idle", "bare", False),
    # The floors, for scale: what any middleware, and any deferring middleware
    # with nothing registered, costs in this server (bench-defined, as above).
    ("passthrough", "bare", False),
    ("minimal_defer", "bare", False),
    ("defer_header", "bare", False),
    ("defer_set_cookie", "bare", False),
)
E2E_TARGET = 0.95


def run_e2e(kind: str, duration: float, reps: int, connections: int) -> dict[str, Any]:
    split = split_cpus()
    client_cpus, server_cpus = split if split else (None, None)
    with ServerProcess(kind, stream_bytes=CHUNK_SIZE, cpus=server_cpus) as server:
        expected = {
            "/cookie": b"user_lang=en",
            "/bare-cookie": b"user_lang=en",
            "/header": b"X-Deferred: yes",
            "/bare-header": b"X-Deferred: yes",
        }
        for path, wanted in expected.items():
            _status, head, _length = http_get(server.port, path, timeout=5)
            if wanted not in head:
                raise RuntimeError(f"{kind}: {path} response lacks {wanted!r}: {head!r}")
        for path in E2E_PATHS.values():
            load(server.port, path, min(1.0, duration), connections, client_cpus)  # warm up
        runs: dict[str, list[float]] = {name: [] for name in E2E_PATHS}
        cpu: dict[str, list[float]] = {name: [] for name in E2E_PATHS}
        names = list(E2E_PATHS)
        for rep in range(reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                cpu_before = server.cpu_seconds()
                outcome = load(server.port, E2E_PATHS[name], duration, connections, client_cpus)
                cpu_used = server.cpu_seconds() - cpu_before
                runs[name].append(outcome["rps"])
                cpu[name].append(cpu_used / outcome["requests"] * 1e6)
    result: dict[str, Any] = {
        "server": kind,
        "client": "wrk" if shutil.which("wrk") else "python threads",
        "pinned": {"client_cpus": sorted(client_cpus), "server_cpus": sorted(server_cpus)} if split else None,
        "duration_s": duration,
        "reps": reps,
        "connections": connections,
    }
    best = {name: max(values) for name, values in runs.items()}
    result["rps_runs"] = runs
    result["server_cpu_us_per_request_runs"] = cpu
    result["server_cpu_us_per_request_min"] = {name: min(values) for name, values in cpu.items()}
    result["rps_best"] = best
    result["ratios"] = [
        {
            "row": row,
            "baseline": base,
            "ratio": best[row] / best[base],
            "target_min": E2E_TARGET if judged else None,
        }
        for row, base, judged in E2E_RATIOS
    ]
    result["pass"] = all(
        ratio["ratio"] >= E2E_TARGET for ratio in result["ratios"] if ratio["target_min"] is not None
    )
    return result


def stream_over_http(port: int, path: str, total: int) -> dict[str, float]:
    buffer = memoryview(bytearray(1 << 20))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        clock = time.perf_counter_ns
        start = clock()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        received = sock.recv_into(buffer)
        first_at = clock()
        head = bytes(buffer[:received])
        while b"\r\n\r\n" not in head:
            more = sock.recv_into(buffer)
            if not more:
                raise ConnectionError("closed before the headers ended")
            head += bytes(buffer[:more])
        end_of_head = head.index(b"\r\n\r\n") + 4
        got = len(head) - end_of_head
        while True:
            more = sock.recv_into(buffer)
            if not more:
                break
            got += more
        end = clock()
    if not head.startswith(b"HTTP/1.1 200") or got != total:
        raise RuntimeError(f"streaming {path}: got {got} of {total} bytes, head {head[:end_of_head]!r}")
    return {
        "ttfb_ns": first_at - start,
        "gib_per_s": total / (end - start) * 1e9 / 2**30,
        "deferred_header": b"X-Deferred: yes" in head[:end_of_head],
    }


def run_stream_http(total: int, reps: int) -> dict[str, Any]:
    paths = {"bare": "/stream/bare", "defer_header_callback": "/stream/wrapped"}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    with ServerProcess("waitress", stream_bytes=total) as server:
        names = list(paths)
        for path in paths.values():
            stream_over_http(server.port, path, total)  # warm up: the first response pays thread start-up
        for rep in range(reps):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                runs[name].append(stream_over_http(server.port, paths[name], total))
    if not all(run["deferred_header"] for run in runs["defer_header_callback"]):
        raise RuntimeError("streaming through waitress: the deferred header is missing")
    summary: dict[str, Any] = {"server": "waitress", "bytes": total, "reps": reps, "variants": {}}
    for name, values in runs.items():
        summary["variants"][name] = {
            "ttfb_min_ns": min(run["ttfb_ns"] for run in values),
            "ttfb_median_ns": statistics.median(run["ttfb_ns"] for run in values),
            "gib_per_s_best": max(run["gib_per_s"] for run in values),
            "gib_per_s_runs": [run["gib_per_s"] for run in values],
        }
    bare = summary["variants"]["bare"]["gib_per_s_best"]
    for row in summary["variants"].values():
        row["throughput_vs_bare"] = row["gib_per_s_best"] / bare
    return summary


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_stream(inproc: dict[str, Any] | None, http: dict[str, Any] | None) -> dict[str, bool]:
    checks: dict[str, bool] = {}
    if inproc is not None:
        mib = inproc["bytes"] / 2**20
        print(
            f"\nStreaming in-process: {mib:.0f} MiB in 64 KiB chunks, lazy generator app, "
            f"best of {inproc['reps']}"
        )
        print(
            f"  {'variant':<24} {'TTFB min':>10} {'median':>10} {'copy GiB/s':>11} {'vs bare':>8} "
            f"{'null GiB/s':>11} {'vs bare':>8} {'ns/chunk':>9} {'peak mem +':>11}"
        )
        for name, row in inproc["variants"].items():
            print(
                f"  {name:<24} {row['ttfb_min_ns'] / 1e3:>8.1f}us {row['ttfb_median_ns'] / 1e3:>8.1f}us "
                f"{row['copy_gib_per_s_best']:>11.2f} {row['copy_throughput_vs_bare']:>8.3f} "
                f"{row['null_gib_per_s_best']:>11.1f} {row['null_throughput_vs_bare']:>8.3f} "
                f"{row['null_ns_per_chunk_best']:>9.0f} {row['peak_memory_growth_bytes'] / 1024:>9.1f}KiB"
            )
        wrapped = inproc["variants"]["defer_header_callback"]
        checks["inprocess_peak_memory_le_1MiB"] = wrapped["peak_memory_growth_bytes"] <= 2**20
        checks["inprocess_ttfb_le_1ms"] = wrapped["ttfb_min_ns"] <= 1e6
        checks["inprocess_copy_throughput_ge_0.9"] = wrapped["copy_throughput_vs_bare"] >= 0.9
        print(
            "  copy = each chunk copied into a 64 KiB buffer (as a socket write would); null = lengths summed"
        )
        print(
            f"  targets (header callback): peak memory growth <= 1 MiB: "
            f"{verdict(checks['inprocess_peak_memory_le_1MiB'])}; TTFB <= 1 ms: "
            f"{verdict(checks['inprocess_ttfb_le_1ms'])}; copy throughput >= 0.9x bare: "
            f"{verdict(checks['inprocess_copy_throughput_ge_0.9'])}"
        )
    if http is not None:
        mib = http["bytes"] / 2**20
        print(
            f"\nStreaming through waitress on 127.0.0.1: {mib:.0f} MiB, socket client, best of {http['reps']}"
        )
        print(f"  {'variant':<24} {'TTFB min':>10} {'median':>10} {'GiB/s':>8} {'vs bare':>8}  runs")
        for name, row in http["variants"].items():
            runs = ", ".join(f"{value:.2f}" for value in row["gib_per_s_runs"])
            print(
                f"  {name:<24} {row['ttfb_min_ns'] / 1e3:>8.0f}us {row['ttfb_median_ns'] / 1e3:>8.0f}us "
                f"{row['gib_per_s_best']:>8.2f} {row['throughput_vs_bare']:>8.3f}  {runs}"
            )
        wrapped = http["variants"]["defer_header_callback"]
        checks["http_ttfb_le_1ms"] = wrapped["ttfb_min_ns"] <= 1e6
        checks["http_throughput_ge_0.9"] = wrapped["throughput_vs_bare"] >= 0.9
        print(
            f"  targets (header callback): TTFB <= 1 ms: {verdict(checks['http_ttfb_le_1ms'])}; "
            f"throughput >= 0.9x bare: {verdict(checks['http_throughput_ge_0.9'])}"
        )
    return checks


def print_e2e(results: list[dict[str, Any]]) -> None:
    print("\nEnd to end on 127.0.0.1 (req/s, best of interleaved runs; server CPU per request, min)")
    for result in results:
        pinned = result["pinned"]
        where = (
            f"server on CPU {pinned['server_cpus']}, client on CPU {pinned['client_cpus']}"
            if pinned
            else "client and server share the CPUs"
        )
        print(
            f"  {result['server']}: {result['client']} client, {result['connections']} keep-alive "
            f"connections, {result['duration_s']:g} s per run, {result['reps']} interleaved runs; {where}"
        )
        cpu = result["server_cpu_us_per_request_min"]
        for name, best in result["rps_best"].items():
            runs = ", ".join(f"{value:.0f}" for value in result["rps_runs"][name])
            print(f"    {name:<18} {best:>9.0f} req/s  server CPU {cpu[name]:>6.1f} us/req  runs: {runs}")
        for ratio in result["ratios"]:
            target = ratio["target_min"]
            judged = "(shown)" if target is None else f">= {target}: {verdict(ratio['ratio'] >= target)}"
            print(f"    {ratio['row'] + ' / ' + ratio['baseline']:<34} {ratio['ratio']:.3f}  {judged}")
        print(f"    target (every like-for-like ratio >= {E2E_TARGET}): {verdict(result['pass'])}")


# --------------------------------------------------------------------------- main


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "implementation": platform.python_implementation()}
    for dist in ("deferware", "WebOb", "Flask", "Werkzeug", "pyramid", "waitress", "gunicorn"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {"platform": platform.platform(), "cpu": model, "cpu_count": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg_at_start"] = os.getloadavg()
    return info


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few seconds per section")
    parser.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    parser.add_argument("--no-micro", action="store_true", help="skip the per-request rows")
    parser.add_argument("--no-e2e", action="store_true", help="skip the waitress/gunicorn req/s runs")
    parser.add_argument("--no-stream", action="store_true", help="skip the streaming runs")
    parser.add_argument("--reps", type=int, help="interleaved repetitions of the rows (default 25; quick 5)")
    parser.add_argument(
        "--budget", type=float, help="seconds per row per repetition (default 0.12; quick 0.01)"
    )
    parser.add_argument("--e2e-duration", type=float, help="seconds per e2e run (default 1; quick 1)")
    parser.add_argument("--e2e-reps", type=int, help="interleaved e2e runs per variant (default 12; quick 1)")
    parser.add_argument("--connections", type=int, default=4, help="client connections for e2e (default 4)")
    parser.add_argument("--stream-mib", type=int, help="streamed size in MiB (default 1024; quick 64)")
    parser.add_argument("--profile", metavar="ROW", action="append", default=[], help="cProfile one row")
    parser.add_argument("--serve", choices=("waitress", "gunicorn"), help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stream-bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = {
        "reps": (25, 5),
        "budget": (0.12, 0.01),
        "e2e_duration": (1.0, 1.0),
        "e2e_reps": (12, 1),
        "stream_mib": (1024, 64),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.fd, args.stream_bytes)
        return 0
    started = time.monotonic()
    report: dict[str, Any] = {
        "versions": versions(),
        "machine": machine(),
        "git_commit": git_commit(),
        "settings": {
            key: value for key, value in vars(args).items() if key not in ("serve", "fd", "stream_bytes")
        },
    }
    print("deferware benchmark:", ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    print("machine:", ", ".join(f"{k} {v}" for k, v in report["machine"].items()))

    if not args.no_micro or args.profile:
        apps = build_row_apps()
        check_rows(apps)
        if not args.no_micro:
            rows = run_micro(apps, args.reps, args.budget)
            ratios, views = compute_ratios(rows)
            print_micro(rows, ratios, views)
            report["rows"] = rows
            report["ratios"] = ratios
            report["set_cookie_overhead"] = views
        for name in args.profile:
            profile_row(apps, name, 2000 if args.quick else 50000)

    checks: dict[str, bool] = {}
    if not args.no_stream:
        total = args.stream_mib * 2**20
        inproc = run_stream_inprocess(total, reps=3 if args.quick else 5)
        http = run_stream_http(total, reps=1 if args.quick else 3)
        checks.update(print_stream(inproc, http))
        report["stream_inprocess"] = inproc
        report["stream_waitress"] = http
    if not args.no_e2e:
        e2e = [
            run_e2e(kind, args.e2e_duration, args.e2e_reps, args.connections)
            for kind in ("waitress", "gunicorn")
        ]
        print_e2e(e2e)
        report["e2e"] = e2e
    report["stream_checks"] = checks
    report["elapsed_s"] = time.monotonic() - started
    if hasattr(os, "getloadavg"):
        report["machine"]["loadavg_at_end"] = os.getloadavg()
        print("load average at end:", report["machine"]["loadavg_at_end"])
    print(f"\ndone in {report['elapsed_s']:.0f} s (timing targets never change the exit status)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
