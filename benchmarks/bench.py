"""What deferware costs: core rows, four frameworks, streaming, real servers; targets as ratios.
Run ``python benchmarks/bench.py [--quick] [--json FILE]``; see ``README.rst`` here."""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import json
import operator
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from importlib import metadata
from typing import Any, Callable, Iterator

import apps
import report


def check(name: str, app: apps.App, wants_cookie: bool) -> None:
    """Refuse to time a row that does not send the response it claims to."""
    seen: list[Any] = []
    body = app(apps.ENVIRON.copy(), lambda status, headers, exc_info=None: seen.extend(headers))
    data = b"".join(body)
    getattr(body, "close", apps.noop)()
    if data != apps.BODY or any("user_lang=en" in value for _name, value in seen) != wants_cookie:
        raise RuntimeError(f"{name!r} sent {seen!r} {data!r}; the cookie was expected: {wants_cookie}")


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return apps.noop


def make_loop(app: apps.App) -> Callable[[int], int]:
    """*n* requests as a server drives them (call, iterate, close); returns ns."""

    def loop(n: int, environ: Any = apps.ENVIRON, respond: Any = start_response) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            body = app(environ.copy(), respond)
            for _chunk in body:
                pass
            if hasattr(body, "close"):
                body.close()
        return time.perf_counter_ns() - start

    return loop


def rotations(names: list[str], reps: int) -> Iterator[str]:
    """Each name once per repetition, from a rotating first name, so that all share the machine's state."""
    for rep in range(reps):
        yield from names[rep % len(names) :] + names[: rep % len(names)]


def time_rows(rows: dict[str, apps.App], reps: int, budget: float) -> dict[str, list[float]]:
    """ns per request, per row and repetition; the gc is off inside a loop, as in timeit."""
    loops, counts, samples = {name: make_loop(app) for name, app in rows.items()}, {}, {}
    for name, loop in loops.items():
        loop(50)  # first-call caches and imports
        n, elapsed = 1, loop(1)
        while elapsed < budget * 1e9 / 4 and n < 1 << 22:
            n, elapsed = n * 2, loop(n * 2)
        counts[name], samples[name] = max(1, int(n * budget * 1e9 / elapsed)), []
    for name in rotations(list(rows), reps):
        gc.collect()
        gc.disable()
        samples[name].append(loops[name](counts[name]) / counts[name])
        gc.enable()
    return samples


def paired(a: list[float], b: list[float], op: Callable[[float, float], float] = operator.sub) -> float:
    """Median over repetitions of a - b: rows timed side by side share their noise."""
    return statistics.median(op(x, y) for x, y in zip(a, b, strict=True))


def run_inprocess(reps: int, budget: float) -> dict[str, Any]:
    """Every core and framework row, timed together; "a - b" differences are paired medians."""
    core, frameworks = apps.core_apps(), apps.framework_apps()
    rows = {name: app for name, (app, _what) in core.items()}
    rows.update({f"{fw}/{way}": app for fw, ways in frameworks.items() for way, app in ways.items()})
    for name, app in rows.items():
        check(name, app, name == "defer_cookie" or name.endswith(("/own", "/deferred")))
    s = time_rows(rows, reps, budget)
    pairs = [(name, "bare") for name in core] + [("defer_noop", "defer_idle"), ("defer_cookie", "defer_idle")]
    pairs += [("defer_five_noop", "defer_idle"), ("webob_set_cookie", "webob_construct")]
    for fw in frameworks:
        plain, idle = f"{fw}/plain", f"{fw}/idle"
        pairs += [(idle, plain), (f"{fw}/own", plain), (f"{fw}/deferred", idle)]
    stats = {k: {"min_ns": min(v), "median_ns": statistics.median(v), "samples_ns": v} for k, v in s.items()}
    for name, (_app, what) in core.items():
        stats[name]["what"] = what
    return {"rows": stats, "differences_ns": {f"{a} - {b}": paired(s[a], s[b]) for a, b in pairs}}


def stream_once(app: apps.App, copy: bool) -> tuple[int, int, int, list[tuple[str, str]]]:
    """(ns to the first chunk, ns in all, bytes, headers) of one request; *copy* copies each
    chunk into a buffer, as a socket write would."""
    sink, seen, clock = memoryview(bytearray(len(apps.CHUNK))), [], time.perf_counter_ns
    start = clock()
    body = app(apps.ENVIRON.copy(), lambda status, headers, exc_info=None: seen.extend(headers))
    chunks = iter(body)
    received, first = len(next(chunks)), clock()
    for chunk in chunks:
        if copy:
            sink[:] = chunk
        received += len(chunk)
    end = clock()
    getattr(body, "close", apps.noop)()
    return first - start, end - start, received, seen


def run_streaming(total: int, reps: int) -> dict[str, Any]:
    n = total // len(apps.CHUNK)
    variants = {"bare": apps.stream_app(n), "header_callback": apps.stream_app(n, "header")}
    variants["call_on_close"] = apps.stream_app(n, "close")
    if ("X-Deferred", "yes") not in stream_once(variants["header_callback"], False)[3]:
        raise RuntimeError("the streaming callback's header was not sent")
    ttfb, copied, counted, memory = ({name: [] for name in variants} for _ in range(4))
    for name in rotations(list(variants), reps):
        for copy, times in ((True, copied), (False, counted)):
            first, elapsed, received, _ = stream_once(variants[name], copy)
            if received != n * len(apps.CHUNK):
                raise RuntimeError(f"streaming {name!r} sent {received} bytes")
            ttfb[name].append(first)
            times[name].append(elapsed)
    for name, app in variants.items():
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        stream_once(app, False)
        memory[name] = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
    return {
        "bytes": n * len(apps.CHUNK), "reps": reps, "peak_memory_growth_bytes": memory,
        "ttfb_ns": {name: statistics.median(values) for name, values in ttfb.items()},
        "gib_per_s": {name: total / statistics.median(v) * 1e9 / 2**30 for name, v in copied.items()},
        "ns_per_chunk": {name: statistics.median(values) / n for name, values in counted.items()},
        "throughput_ratio": paired(copied["bare"], copied["header_callback"], operator.truediv),
        "wrapped_over_bare_ns_per_chunk": paired(counted["call_on_close"], counted["bare"]) / n,
    }  # fmt: skip


@contextlib.contextmanager
def serve(kind: str, wrapper: tuple[str, ...] = (), timeout: float = 30) -> Iterator[tuple[int, int]]:
    """waitress (4 threads) or gunicorn (one gthread worker, 4 threads) serving ``apps.server_app``
    on 127.0.0.1, from its own command line; yields (PID, port) and stops it by its PID."""
    with socket.socket() as probe:  # a free port, for the server to bind at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    gunicorn = ["-b", address, "-k", "gthread", "--threads=4", "--log-level=warning", "apps:server_app()"]
    waitress = [f"--listen={address}", "--threads=4", "--call", "apps:server_app"]
    command = [*wrapper, sys.executable, "-m", kind, *{"waitress": waitress, "gunicorn": gunicorn}[kind]]
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen(command, cwd=here, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(ConnectionRefusedError):
                get(port, "/flask/plain", 1)
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{kind} did not answer on port {port} within {timeout} s")
        yield proc.pid, port
    finally:
        proc.terminate()  # gunicorn's arbiter stops its worker
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def get(port: int, path: str, count: int, seconds: float = 60) -> int:
    """Up to *count* GETs of *path* on one keep-alive connection within *seconds*; each must send the
    hello and, on the ``own`` and ``deferred`` routes only, the cookie. Returns how many."""
    connection, done = http.client.HTTPConnection("127.0.0.1", port, timeout=60), 0
    deadline = time.monotonic() + seconds
    try:
        while done < count and time.monotonic() < deadline:
            connection.request("GET", path)
            response = connection.getresponse()
            cookie = "user_lang=en" in (response.getheader("Set-Cookie") or "")
            if response.read() != apps.BODY or cookie != path.endswith(("/own", "/deferred")):
                raise RuntimeError(f"GET {path} answered {response.status} {response.getheaders()}")
            done += 1
    finally:
        connection.close()
    return done


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* and its children (gunicorn's worker), from /proc."""
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        ticks = 0
        for each in [pid, *file.read().split()]:
            with open(f"/proc/{each}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def count_instructions(servers: dict[str, Any], windows: int, count: int) -> None:
    """Instructions per request in waitress's worker threads under callgrind, per route: the median over
    *windows* rounds of (collect garbage, zero the counters, *count* requests, dump the counters). The
    workers run the application and write its response; the main thread's event loop is left out, as
    its count follows timing. Unlike time, the count does not depend on what else the machine does."""
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        servers["skipped"] = "valgrind's callgrind_control is not on PATH"
        return print(f"instructions not counted: {servers['skipped']}", file=sys.stderr)
    samples: dict[str, list[float]] = {route: [] for route in servers["routes"]}
    with tempfile.TemporaryDirectory() as folder:
        options = ["--instr-atstart=no", "--separate-threads=yes", f"--callgrind-out-file={folder}/o"]
        with serve("waitress", ("valgrind", "-q", "--tool=callgrind", *options), timeout=600) as (pid, port):
            subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
            for route in samples:
                get(port, route, count)  # warm-up
            for route in rotations(list(samples), windows):
                get(port, "/gc", 1)
                subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
                get(port, route, count, 600)
                before = set(os.listdir(folder))
                subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
                total = 0
                for dump in set(os.listdir(folder)) - before:
                    if not dump.endswith("-01"):  # thread 1, the main thread
                        with open(os.path.join(folder, dump)) as file:
                            total += int(next(line for line in file if line.startswith("totals:")).split()[1])
                samples[route].append(total / count)
    for route, values in samples.items():
        servers["routes"][route].update(instructions=statistics.median(values), instruction_samples=values)


def run_servers(reps: int, seconds: float, windows: int) -> dict[str, Any]:
    routes = [f"/{fw}/{way}" for fw in apps.FRAMEWORKS for way in apps.WAYS]
    servers: dict[str, Any] = {"routes": {route: {} for route in routes}}
    for kind in ("waitress", "gunicorn"):
        totals = {route: [0, 0.0, 0.0] for route in routes}  # requests, seconds, CPU seconds
        with serve(kind) as (pid, port):
            for route in routes:
                get(port, route, 50, seconds)
            for route in rotations(routes, reps):
                cpu, start = cpu_seconds(pid), time.perf_counter()
                totals[route][0] += get(port, route, 1 << 30, seconds)
                totals[route][1] += time.perf_counter() - start
                totals[route][2] += cpu_seconds(pid) - cpu
        for route, (done, elapsed, cpu) in totals.items():
            servers["routes"][route][kind] = {"rps": done / elapsed, "cpu_us": cpu / done * 1e6}
    count_instructions(servers, windows, 30 if windows > 1 else 5)
    return servers


def targets(inprocess: Any, stream: Any, servers: Any) -> list[dict[str, Any]]:
    """Each target is a ratio between rows of this run (or a figure); a miss never fails the run."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float, limit: float, how: str, op: str = "<=") -> None:
        met = value <= limit if op == "<=" else value >= limit
        out.append({"name": name, "value": value, "op": op, "limit": limit, "met": met, "how": how})

    d = inprocess["differences_ns"]
    idle, floor, noop = d["defer_idle - bare"], d["minimal_defer - bare"], d["defer_noop - defer_idle"]
    webob, cookie = d["webob_construct - bare"], d["defer_cookie - defer_idle"]
    add("core: idle / minimal deferring", idle / floor, 1.3, f"{idle:.0f} / {floor:.0f} ns over bare")
    add("core: no-op callback / webob.Response()", noop / webob, 0.75, f"{noop:.0f} / {webob:.0f} ns")
    for fw in ("pyramid", "flask"):
        own, webob_cookie = d[f"{fw}/own - {fw}/plain"], d["webob_set_cookie - webob_construct"]
        how = f"{cookie:.0f} / {own:.0f} ns; WebOb's set_cookie alone: {webob_cookie:.0f} ns"
        add(f"core: set_cookie callback / {fw}'s own", cookie / own, 1.0, how)
    for fw in apps.FRAMEWORKS:
        own, ours = d[f"{fw}/own - {fw}/plain"], d[f"{fw}/deferred - {fw}/idle"]
        idle, plain = d[f"{fw}/idle - {fw}/plain"], inprocess["rows"][f"{fw}/plain"]["median_ns"]
        add(f"{fw}: deferware cookie / own cookie", ours / own, 1.1, f"{ours:.0f} / {own:.0f} ns")
        add(
            f"{fw}: idle adds", idle / plain, 0.02, f"{idle:.0f} of {plain:.0f} ns; floor {floor / plain:.1%}"
        )
    for fw in () if "skipped" in servers else apps.FRAMEWORKS:
        i = {way: servers["routes"][f"/{fw}/{way}"]["instructions"] for way in apps.WAYS}
        own, ours, idle = i["own"] - i["plain"], i["deferred"] - i["idle"], i["idle"] - i["plain"]
        add(f"{fw}: deferware cookie / own, waitress", ours / own, 1.1, f"{ours:.0f} / {own:.0f} instr.")
        add(f"{fw}: idle adds, waitress", idle / i["plain"], 0.02, f"{idle:.0f} of {i['plain']:.0f} instr.")
    memory, gib = max(stream["peak_memory_growth_bytes"].values()) / 2**20, stream["gib_per_s"]
    add("streaming: peak memory growth (MiB)", memory, 1.0, "tracemalloc, the largest of the three variants")
    ttfb = stream["ttfb_ns"]["header_callback"] / 1e6
    add("streaming: time to first byte (ms)", ttfb, 1.0, "header-only callback")
    how = f"header callback, chunks copied: {gib['header_callback']:.2f} / {gib['bare']:.2f} GiB/s"
    add("streaming: throughput / bare", stream["throughput_ratio"], 0.95, how, ">=")
    how = "call_on_close registered, chunks not copied"
    add("streaming: wrapped, per chunk over bare (ns)", stream["wrapped_over_bare_ns_per_chunk"], 300, how)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (CI): its timings mean nothing")
    parser.add_argument("--json", metavar="FILE", help="write every row, sample and target to FILE")
    args = parser.parse_args(argv)
    quick, started = args.quick, time.monotonic()
    inprocess = run_inprocess(reps=3 if quick else 31, budget=0.005 if quick else 0.04)
    stream = run_streaming(total=2**20 * (64 if quick else 1024), reps=2 if quick else 9)
    servers = run_servers(reps=1 if quick else 3, seconds=0.1 if quick else 0.5, windows=1 if quick else 5)
    names = ("deferware", "WebOb", "Django", "Flask", "pyramid", "bottle", "waitress", "gunicorn")
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "quick": quick}
    meta.update(versions={name: metadata.version(name) for name in names}, frameworks=apps.FRAMEWORKS)
    data = {"meta": meta, "inprocess": inprocess, "streaming": stream, "servers": servers}
    data["targets"] = targets(inprocess, stream, servers)
    meta.update(date=time.strftime("%Y-%m-%d"), elapsed_s=round(time.monotonic() - started))
    print(report.render_markdown(data))
    met = sum(target["met"] for target in data["targets"])
    print(f"{met} of {len(data['targets'])} targets met in {meta['elapsed_s']} s", "(quick run)" * quick)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(data, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
