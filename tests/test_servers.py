"""Request isolation under real concurrency, through real servers.

Each server (waitress with 8 threads, gunicorn with ``gthread`` workers, gunicorn
with ``gevent`` workers) runs ``isolation_app:application`` as a subprocess on
127.0.0.1. 32 client threads, each with its own keep-alive connection, send
2,048 requests with unique ids; every response must carry its own id in each
header and cookie the callbacks set, and no other request's. Leaks and errors
are counted, printed (``pytest -s``) and asserted to be zero.
"""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from server_procs_reliability import running_server

REQUESTS = 2048
CONCURRENCY = 32
TIMEOUT = 20  # seconds, per socket operation
SERVERS = ("waitress", "gunicorn-gthread", "gunicorn-gevent")


@dataclass
class Tally:
    requests: int = 0
    leaks: int = 0
    errors: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.leaks += other.leaks
        self.errors += other.errors
        self.problems.extend(other.problems[:5])


def check_response(request_id: str, response: http.client.HTTPResponse, body: bytes, tally: Tally) -> None:
    """Count a leak for every value that belongs to another request, and an error
    for anything else wrong (missing, duplicated, bad status)."""
    expected = {
        "X-Req-Ctx": [request_id],
        "X-Req-Nested": [request_id],
        "X-Req-Thread": [request_id],
        "Set-Cookie": [f"rid={request_id}; Path=/"],
    }
    seen = {name: response.msg.get_all(name) or [] for name in expected}
    if response.status != 200 or body != request_id.encode():
        tally.errors += 1
        tally.problems.append(f"{request_id}: status {response.status}, body {body[:60]!r}")
    for name, values in seen.items():
        if values == expected[name]:
            continue
        foreign = [value for value in values if request_id not in value]
        if foreign:
            tally.leaks += len(foreign)
            tally.problems.append(f"{request_id}: LEAK {name}={foreign!r}")
        else:
            tally.errors += 1
            tally.problems.append(f"{request_id}: {name} is {values!r}, expected {expected[name]!r}")


def client(port: int, ids: list[str]) -> Tally:
    """One client thread: its own keep-alive connection, requests in sequence."""
    tally = Tally()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        for request_id in ids:
            tally.requests += 1
            try:
                connection.request("GET", f"/?id={request_id}")
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                tally.errors += 1
                tally.problems.append(f"{request_id}: {exc!r}")
                connection.close()  # reconnects on the next request
                continue
            check_response(request_id, response, body, tally)
    finally:
        connection.close()
    return tally


def hammer(port: int) -> Tally:
    ids = [f"r{index:05d}x{port}" for index in range(REQUESTS)]
    per_client = [ids[start::CONCURRENCY] for start in range(CONCURRENCY)]
    total = Tally()
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        for tally in pool.map(client, [port] * CONCURRENCY, per_client):
            total.add(tally)
    return total


@pytest.mark.parametrize("server", SERVERS)
def test_no_callback_leaks_between_concurrent_requests(server: str, tmp_path: Path) -> None:
    with running_server(server, "isolation_app:application", tmp_path / "server.log") as (port, proc):
        started = time.perf_counter()
        tally = hammer(port)
        seconds = time.perf_counter() - started
        assert proc.poll() is None, "the server died under load"
    print(
        f"\n[isolation] server={server} requests={tally.requests} concurrency={CONCURRENCY} "
        f"leaks={tally.leaks} errors={tally.errors} seconds={seconds:.2f}"
    )
    assert tally.requests == REQUESTS
    assert (tally.leaks, tally.errors) == (0, 0), "\n".join(tally.problems[:20])
