"""Start and stop real WSGI servers on 127.0.0.1 as subprocesses, for the tests.

Each server runs in its own session (process group), so that stopping it can
check that nothing it started (gunicorn's workers) is left behind.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

TESTS_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_command(kind: str, port: int, app: str) -> list[str]:
    """The command line for server *kind* serving ``module:callable`` *app*."""
    bind = f"127.0.0.1:{port}"
    if kind == "waitress":
        return [sys.executable, "-m", "waitress", "--threads=8", f"--listen={bind}", app]
    gunicorn = [sys.executable, "-m", "gunicorn", "--chdir", str(TESTS_DIR), "-b", bind, "-w", "2"]
    gunicorn += ["--graceful-timeout", "5", "--keep-alive", "30", "--log-level", "warning"]
    if kind == "gunicorn-gthread":
        return [*gunicorn, "-k", "gthread", "--threads", "8", app]
    if kind == "gunicorn-gevent":
        return [*gunicorn, "-k", "gevent", "--worker-connections", "128", app]
    raise ValueError(f"unknown server kind {kind!r}")  # pragma: no cover


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    """Poll until the server answers an HTTP request, within *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} during start-up:\n{_log_tail(log)}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/?id=ready")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
        finally:
            connection.close()
    raise AssertionError(f"server did not answer on port {port} within {timeout} s:\n{_log_tail(log)}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - the group id was reused by someone else
        return False
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """terminate, wait (bounded), kill as a fallback; then check the group is empty."""
    pgid = proc.pid  # start_new_session: the server leads its own process group
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    deadline = time.monotonic() + 10
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftover = _group_alive(pgid)
    if leftover:
        os.killpg(pgid, signal.SIGKILL)
    assert proc.returncode is not None, "the server process did not exit"
    assert not leftover, "the server left processes behind (its workers) after it stopped"


@contextlib.contextmanager
def running_server(
    kind: str, app: str, log: Path, *, env: dict[str, str] | None = None, timeout: float = 30
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Run server *kind* with *app* on a free port; yield ``(port, process)``.

    The server is stopped on the way out, whatever happened, and the exit is
    asserted (the process exited, no process of its group is left).
    """
    port = free_port()
    with open(log, "wb") as output:
        proc = subprocess.Popen(
            server_command(kind, port, app),
            cwd=TESTS_DIR,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, port, log, timeout)
            yield port, proc
        finally:
            _stop(proc)
