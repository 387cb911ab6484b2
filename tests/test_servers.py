"""deferware through real servers: waitress, gunicorn (``gthread`` and ``gevent``
workers), cheroot and uWSGI.

Each server runs ``servers:application`` (see ``servers.py``) as a subprocess on
127.0.0.1, once for this module, and is stopped by its PID at the end, also when
a test failed. A server that cannot run on this machine skips its tests with the
reason.

- Isolation: 32 client threads, each with its own keep-alive connection, send
  requests with unique ids; every response must carry its own id in each header
  and cookie the callbacks set, and no other request's. Leaks and errors are
  counted, printed (``pytest -s``) and asserted to be zero.
- Bodiless responses: a 304 left with a body, a 204 gzipped by a callback, a
  HEAD given a body by a callback. Servers that send what they are given
  (cheroot, uWSGI) put such a body on the wire, where the next response on the
  same keep-alive connection is read from it: that response must still parse
  and carry its own body. (A server may instead announce that it closes the
  connection: waitress does after every 1xx, 204 and 304.)
- A file body with a close callback, as ``wsgi.file_wrapper`` returns it
  (uWSGI's returns the file itself, and cheroot has none, so the body is the
  file there too): it arrives whole, the callback runs once, and the worker's
  memory stays far below the size of the file, which holds no newline: it was
  read in blocks, not by lines (not asserted on waitress, see RSS_SAYS_NOTHING).
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from servers import SERVERS, running_server, unavailable

REQUESTS = 2048
CONCURRENCY = 32
TIMEOUT = 20  # seconds, per socket operation
MiB = 1024 * 1024
SERVED_SIZE = 16 * MiB
RSS_GROWTH_LIMIT = 8 * MiB  # a block read grows the worker by kilobytes; one line by SERVED_SIZE
STALL = 0.5  # seconds the client leaves the file body unread, while the worker's memory is sampled
# waitress's task thread hands each chunk to its channel, which buffers what the
# socket has not taken yet (in memory, then in temporary files): its process grows
# by megabytes with a bare generator of 32 KiB blocks too, so its memory says
# nothing there about how the body was read. The other servers' workers send each
# chunk before they ask for the next one.
RSS_SAYS_NOTHING = {"waitress"}


@dataclass(frozen=True)
class Server:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    served_file: Path


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One running server of each kind, shared by this module's tests."""
    kind: str = request.param
    reason = unavailable(kind)
    if reason is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp(kind)
    served_file = directory / "served.bin"
    env = {"DEFERWARE_SERVED_FILE": str(served_file)}
    with running_server(kind, "servers:application", directory / "server.log", env=env) as (port, proc):
        yield Server(kind, port, proc, served_file)


# Isolation.


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


def test_no_callback_leaks_between_concurrent_requests(server: Server) -> None:
    started = time.perf_counter()
    tally = hammer(server.port)
    seconds = time.perf_counter() - started
    assert server.proc.poll() is None, "the server died under load"
    print(
        f"\n[isolation] server={server.kind} requests={tally.requests} concurrency={CONCURRENCY} "
        f"leaks={tally.leaks} errors={tally.errors} seconds={seconds:.2f}"
    )
    assert tally.requests == REQUESTS
    assert (tally.leaks, tally.errors) == (0, 0), "\n".join(tally.problems[:20])


# Bodiless responses.


class ExactResponse(http.client.HTTPResponse):
    """An ``HTTPResponse`` that reads no byte past its own message.

    http.client reads each response through a new buffered file, which may read
    ahead: body bytes a server sent after a bodiless response's headers could
    land in that buffer and be dropped with it, hiding them. With a one-byte
    buffer they stay on the socket, where the next response's status line is read.
    """

    def __init__(
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        self.fp.close()  # the buffered file from the base class, unread
        self.fp = sock.makefile("rb", 1)


class ExactConnection(http.client.HTTPConnection):
    response_class = ExactResponse


BODILESS = [
    pytest.param("GET", "/bodiless/304", 304, id="304-body-left-by-callback"),
    pytest.param("GET", "/bodiless/204-gzip", 204, id="204-gzip-by-callback"),
    pytest.param("HEAD", "/bodiless/head", 200, id="head-body-set-by-callback"),
]


@pytest.mark.parametrize(("method", "path", "status"), BODILESS)
def test_no_stray_body_after_bodiless_response(server: Server, method: str, path: str, status: int) -> None:
    """The next response on the connection parses and carries its own body.

    A server may instead announce that it closes the connection (waitress does
    after every 1xx, 204 and 304): stray bytes cannot reach the next response
    then, which goes on a new connection. The printed line says which it was.
    """
    connection = ExactConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        response.read()  # nothing, for these statuses and HEAD: http.client reads no body
        assert response.status == status
        # None: the server sent "Connection: close" and http.client closed its end.
        kept_alive = connection.sock is not None
        connection.request("GET", "/bodiless/plain?after-bodiless")
        try:
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise AssertionError(
                f"the response after {method} {path} on the same connection is unreadable: {exc!r} "
                "(bytes of the bodiless response went out, or the server dropped the connection unannounced)"
            ) from exc
    finally:
        connection.close()
    print(f"\n[bodiless] server={server.kind} {method} {path}: kept alive={kept_alive}")
    assert (response.status, body) == (200, b"own body of after-bodiless")
    assert response.getheader("X-Deferred") == "yes"


# File bodies.


def rss(pid: int) -> int:
    """The resident set size of process *pid*, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{pid}/status has no VmRSS line")


def worker(connection: http.client.HTTPConnection) -> tuple[int, int]:
    """The pid of the process that serves *connection*, and the file bodies it closed."""
    connection.request("GET", "/file/pid")
    pid, closed = connection.getresponse().read().split()
    return int(pid), int(closed)


def test_file_wrapper_body_is_streamed_in_blocks(server: Server) -> None:
    """The worker's memory stays far below the size of the file it sends.

    Sampled while the client leaves the body unread, so that the worker is
    blocked sending it: a body read by lines holds the whole file then. (Not
    VmHWM: that keeps the worker's earlier peaks.)
    """
    if not Path("/proc/self/status").exists():
        pytest.skip("measuring a server worker's memory needs Linux's /proc/<pid>/status")
    data = bytes(range(11, 256)) * (SERVED_SIZE // 245) + b"z" * (SERVED_SIZE % 245)  # no b"\n"
    server.served_file.write_bytes(data)
    # One keep-alive connection: one worker process serves all three requests.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        pid, closed_before = worker(connection)
        baseline = peak = rss(pid)
        connection.request("GET", "/file")
        response = connection.getresponse()  # the headers: the body waits on the socket
        assert (response.status, response.getheader("X-Worker-Pid")) == (200, str(pid))
        deadline = time.monotonic() + STALL
        while time.monotonic() < deadline and peak - baseline < RSS_GROWTH_LIMIT:
            peak = max(peak, rss(pid))
            time.sleep(0.01)
        body = response.read()
        _, closed_after = worker(connection)
    finally:
        connection.close()
    growth = peak - baseline
    limit = "not asserted" if server.kind in RSS_SAYS_NOTHING else f"limit {RSS_GROWTH_LIMIT // MiB} MiB"
    print(f"\n[file body] server={server.kind} worker RSS growth={growth / MiB:.1f} MiB ({limit})")
    assert len(body) == len(data) and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert closed_after == closed_before + 1, "the close callback did not run once"
    if server.kind in RSS_SAYS_NOTHING:
        return
    assert growth < RSS_GROWTH_LIMIT, (
        f"the worker grew by {growth / MiB:.1f} MiB while sending a {len(data) / MiB:.0f} MiB file "
        "with no newline: the body was read by lines, not in blocks"
    )
