"""Each request gets a fresh registry, and nothing leaks between requests: in
sequence, across threads, and across greenlets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import gevent
from webtest import TestApp

from deferware import ENVIRON_KEY, DeferMiddleware, after_this_request, call_on_close
from deferware.registry import Registry

REQUESTS = 40


def test_each_request_gets_a_fresh_registry_in_the_environ(make_app, make_environ, drive):
    registries = []

    def register(environ):
        registries.append(environ[ENVIRON_KEY])

    middleware = DeferMiddleware(make_app("list", during=register))
    for _ in range(3):
        drive(middleware, make_environ())

    assert all(isinstance(registry, Registry) for registry in registries)
    assert len({id(registry) for registry in registries}) == 3


def test_callbacks_of_one_request_do_not_reach_the_next(make_app, wrap):
    closed = []

    def register(environ):
        if environ["PATH_INFO"] == "/first":
            after_this_request(lambda response: response.headers.add("X-First", "yes"))
            call_on_close(lambda: closed.append(environ["PATH_INFO"]))

    app = TestApp(wrap(make_app("list", during=register)))
    first = app.get("/first")
    second = app.get("/second")

    assert first.headers.get("X-First") == "yes"
    assert "X-First" not in second.headers
    assert closed == ["/first"]


def _tagging_app(pause):
    """An app that tags its response with the request's own id, from callbacks
    registered by context, pausing (yielding to other requests) in between."""

    def app(environ, start_response):
        tag = environ["PATH_INFO"].strip("/")
        closed = environ["test.closed"]
        after_this_request(lambda response: response.headers.add("X-Tag", tag))
        call_on_close(lambda: closed.append(tag))
        pause()
        after_this_request(lambda response: response.headers.add("X-Tag", tag))
        start_response("200 OK", [("Content-Type", "text/plain")])
        pause()
        return [tag.encode()]

    return app


def _run_one(middleware, make_environ, drive, tag):
    closed = []
    sent = drive(middleware, make_environ(f"/{tag}", **{"test.closed": closed}))
    return tag, sent.header("X-Tag"), sent.body, closed


def test_no_leak_between_concurrent_threads(make_environ, drive):
    barrier = threading.Barrier(8, timeout=10)

    def pause():
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # fewer than 8 left at the end
            pass

    middleware = DeferMiddleware(_tagging_app(pause))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: _run_one(middleware, make_environ, drive, str(n)), range(16)))

    for tag, headers, body, closed in results:
        assert headers == [tag, tag]
        assert body == tag.encode()
        assert closed == [tag]


def test_no_leak_between_greenlets(make_environ, drive):
    middleware = DeferMiddleware(_tagging_app(lambda: gevent.sleep(0)))

    greenlets = [gevent.spawn(_run_one, middleware, make_environ, drive, str(n)) for n in range(REQUESTS)]
    gevent.joinall(greenlets, raise_error=True)

    for greenlet in greenlets:
        tag, headers, body, closed = greenlet.value
        assert headers == [tag, tag]
        assert body == tag.encode()
        assert closed == [tag]


def test_no_leak_between_greenlets_with_a_monkey_patched_process(tmp_path):
    # Monkey-patching must not happen in the pytest process, so it runs apart.
    script = tmp_path / "patched.py"
    script.write_text(
        textwrap.dedent(
            """
            from gevent import monkey
            monkey.patch_all()

            import threading
            import time

            from webob import Request

            from deferware import DeferMiddleware, after_this_request

            def app(environ, start_response):
                tag = environ["PATH_INFO"]
                after_this_request(lambda response: response.headers.add("X-Tag", tag))
                time.sleep(0.001)
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [tag.encode()]

            middleware = DeferMiddleware(app)
            results = {}

            def run(n):
                response = Request.blank(f"/{n}").get_response(middleware)
                results[n] = response.headers.getall("X-Tag")

            threads = [threading.Thread(target=run, args=(n,)) for n in range(50)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert results == {n: [f"/{n}"] for n in range(50)}, results
            print("ok")
            """
        )
    )

    completed = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
