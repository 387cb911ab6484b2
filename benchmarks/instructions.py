"""Instructions per request, counted by valgrind's callgrind: in a tight loop
and inside waitress, for the end-to-end routes of ``bench.py``.

Why: end to end, deferware costs the server several times the time it costs
in ``bench.py``'s tight loop. This tells apart the two possible causes. If the
server ran more of deferware's code per request (a slower path, more garbage
collection), the count inside waitress would grow more than in the loop; if
the counts grow alike, the server runs the same instructions, only slower
(colder caches between requests), and only running fewer of them helps.

Run ``python benchmarks/instructions.py`` (about 3 minutes; needs valgrind,
``apt install valgrind``). Instruction counts do not depend on what else the
machine is doing: two runs give the same numbers to within a few tenths of a
percent. Nothing here is timed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import bench

#: (route, the baseline route that sends the same response without deferware)
ROUTES = (
    ("/bare", "/bare"),
    ("/passthrough", "/bare"),
    ("/minimal-defer", "/bare"),
    ("/idle", "/bare"),
    ("/noop", "/bare"),
    ("/bare-header", "/bare-header"),
    ("/header", "/bare-header"),
    ("/bare-cookie", "/bare-cookie"),
    ("/cookie", "/bare-cookie"),
    ("/webob", "/webob"),
    ("/webob-header", "/webob"),  # WebOb's own response.headers[name] = value
)

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def loop(path: str, count: int) -> None:
    """Child mode: serve *count* requests to *path* in process, as bench.py's
    timed loop does."""
    bench.make_loop(bench.build_routes(bench.CHUNK_SIZE)[path])(count)


def count_loop_run(path: str, count: int) -> int:
    """Instructions of a whole child process serving *count* requests in a loop."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, os.path.abspath(__file__), "--loop", path, str(count)],
        capture_output=True, text=True, timeout=600, check=True,
        env=dict(os.environ, PYTHONHASHSEED="0"),  # the same start-up in every run
    )  # fmt: skip
    match = _COLLECTED.search(done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-2000:]}")
    return int(match.group(1))


def per_request(pool: ThreadPoolExecutor, path: str, small: int, large: int) -> Callable[[], float]:
    """Instructions per request in the tight loop: the difference between a
    run of *large* and one of *small* requests (start-up cancels out). Both runs
    start now, in *pool*; the result waits for them. Counts do not depend on
    what else the machine does, so they can run beside each other."""
    few = pool.submit(count_loop_run, path, small)
    many = pool.submit(count_loop_run, path, large)
    return lambda: (many.result() - few.result()) / (large - small)


def requests(port: int, path: str, count: int) -> None:
    """*count* keep-alive GETs to *path*, one after the other."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        buffer = bytearray()
        for _ in range(count):
            sock.sendall(request)
            status, _head, _length = bench.read_response(sock, buffer)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}")


def count_in_waitress(paths: list[str], warm: int, count: int) -> dict[str, float]:
    """Instructions per request inside waitress (run under callgrind): counters
    zeroed, *count* requests, counters dumped, per path."""
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")
        with bench.ServerProcess("waitress", bench.CHUNK_SIZE, wrapper=wrapper, ready_timeout=300) as server:
            assert server.proc is not None
            pid = str(server.proc.pid)
            for path in paths:
                requests(server.port, path, warm)
            for path in paths:
                subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True, timeout=60)
                requests(server.port, path, count)
                before = set(os.listdir(folder))
                subprocess.run(["callgrind_control", "-d", pid], capture_output=True, check=True, timeout=60)
                (dump,) = set(os.listdir(folder)) - before
                with open(os.path.join(folder, dump)) as file:
                    match = _TOTALS.search(file.read())
                if match is None:
                    raise RuntimeError(f"no totals in the callgrind dump {dump}")
                result[path] = int(match.group(1)) / count
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=1000, help="requests counted per route (default 1000; 50: smoke run)"
    )
    parser.add_argument("--loop", nargs=2, metavar=("PATH", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loop:
        loop(args.loop[0], int(args.loop[1]))
        return 0
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("valgrind is not installed (apt install valgrind); nothing counted", file=sys.stderr)
        return 2
    paths = [path for path, _base in ROUTES]
    n = args.requests
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        pending = {path: per_request(pool, path, n // 10, n + n // 10) for path in paths}
        in_server = count_in_waitress(paths, warm=max(50, n // 5), count=n)
        in_loop = {path: result() for path, result in pending.items()}
    print("Instructions per request (callgrind). over: minus the route that sends the same")
    print("response without deferware; share: that route's count over this one's in waitress,")
    print("the req/s ratio if every instruction took the same time (kernel time not counted).")
    print(f"  {'route':<16} {'in loop':>10} {'over':>8}   {'in waitress':>12} {'over':>8} {'share':>7}")
    for path, base in ROUTES:
        loop_over = in_loop[path] - in_loop[base]
        server_over = in_server[path] - in_server[base]
        share = in_server[base] / in_server[path]
        print(
            f"  {path:<16} {in_loop[path]:>10.0f} {loop_over:>8.0f}   "
            f"{in_server[path]:>12.0f} {server_over:>8.0f} {share:>7.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
