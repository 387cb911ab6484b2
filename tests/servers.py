"""Real WSGI servers on 127.0.0.1 for the tests, and the application they serve.

``running_server`` starts one server (waitress, gunicorn with ``gthread`` or
``gevent`` workers, cheroot, uWSGI) as a subprocess in its own session (process
group) and stops it by its PID, checking that nothing it started (gunicorn's and
uWSGI's workers) is left behind. ``unavailable`` says why a server cannot run on
this machine, so that its tests skip with that reason instead of failing.

``application`` is what ``test_servers.py`` runs on every server: the isolation
application (``isolation_app``) at ``/``, and the responses that servers which
send what they are given (cheroot, uWSGI) put on the wire as they get them:

- ``/bodiless/304``, ``/bodiless/204-gzip``, ``/bodiless/head`` (for HEAD): a
  callback leaves a body on a 304, gzips a 204's empty body (20 bytes of gzip
  framing), sets a body on the answer to HEAD; ``/bodiless/plain`` is the
  ordinary response sent after each of them on the same connection;
- ``/file``: the file named by ``DEFERWARE_SERVED_FILE``, as
  ``wsgi.file_wrapper`` returns it (uWSGI's returns the file object itself; on a
  server with none, cheroot, the body is that file object too), with a
  ``call_on_close`` callback, so deferware has to wrap it; ``/file/pid``: the
  answering process's id and how many file bodies it has closed so far.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from isolation_app import application as isolation_application
from webob import Response

from deferware import DeferMiddleware, after_this_request, call_on_close

TESTS_DIR = Path(__file__).resolve().parent
SERVERS = ("waitress", "gunicorn-gthread", "gunicorn-gevent", "cheroot", "uwsgi")

# What must import for a Python-level server to run (gevent and the gunicorn
# workers have compiled or platform-specific parts).
_IMPORT_PROBES = {
    "waitress": "import waitress",
    "gunicorn-gthread": "import gunicorn.workers.gthread",
    "gunicorn-gevent": "import gunicorn.workers.ggevent",
    "cheroot": "import cheroot.wsgi",
    "gunicorn-sync": "import gunicorn.workers.sync",
    "uvicorn": "import uvicorn",
}


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _uwsgi() -> Path:
    # The uwsgi the testing extra built for this interpreter; one found elsewhere
    # on PATH may embed another Python, which could not import deferware.
    return Path(sysconfig.get_path("scripts")) / "uwsgi"


@functools.cache
def unavailable(kind: str) -> str | None:
    """Why server *kind* cannot run on this machine, or None if it can.

    Checked without deferware: the server's own import, or for uWSGI its
    binary's ``--version``. A server that passes this but then fails to start
    with the application is a test failure, not a skip.
    """
    if kind == "uwsgi":
        if not _uwsgi().exists():
            return f"uWSGI is not installed: {_uwsgi()} is missing (the testing extra omits it on Windows)"
        probe = [str(_uwsgi()), "--version"]
    else:
        probe = [sys.executable, "-c", _IMPORT_PROBES[kind]]
    try:
        result = subprocess.run(probe, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{kind} cannot run here: {' '.join(probe)!r} failed: {exc}"
    if result.returncode:
        output = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
        last = output[-1] if output else "no output"
        return f"{kind} cannot run here: {' '.join(probe)!r} exited with {result.returncode}: {last}"
    return None


def server_command(kind: str, port: int, app: str, cwd: Path = TESTS_DIR) -> list[str]:
    """The command line for server *kind* serving ``module:callable`` *app* from *cwd*."""
    bind = f"127.0.0.1:{port}"
    if kind == "uvicorn":  # an ASGI server
        return [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), app]
    if kind == "waitress":
        return [sys.executable, "-m", "waitress", "--threads=8", f"--listen={bind}", app]
    if kind == "cheroot":
        return [sys.executable, "-m", "cheroot", app, "--bind", bind, "--threads", "8"]
    if kind == "uwsgi":
        # uWSGI's own HTTP server in its usual threaded mode (no router process);
        # --http11-socket is --http-socket with keep-alive, which the bodiless
        # tests need. --die-on-term: SIGTERM stops uWSGI (its default is a reload).
        command = [str(_uwsgi()), "--strict", "--http11-socket", bind, "--module", app]
        command += ["--master", "--threads", "4", "--die-on-term", "--need-app", "--disable-logging"]
        command += ["--pythonpath", str(TESTS_DIR)]
        if sys.prefix != sys.base_prefix:  # a virtualenv: the embedded Python must use it too
            command += ["--virtualenv", sys.prefix]
        return command
    gunicorn = [sys.executable, "-m", "gunicorn", "--chdir", str(cwd), "-b", bind, "-w", "2"]
    gunicorn += ["--graceful-timeout", "5", "--keep-alive", "30", "--log-level", "warning"]
    if kind == "gunicorn-gthread":
        return [*gunicorn, "-k", "gthread", "--threads", "8", app]
    if kind == "gunicorn-gevent":
        return [*gunicorn, "-k", "gevent", "--worker-connections", "128", app]
    if kind == "gunicorn-sync":
        return [*gunicorn[:-2], "-w", "1", "-k", "sync", app]
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
    kind: str,
    app: str,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30,
    cwd: Path = TESTS_DIR,
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Run server *kind* with *app* on a free port; yield ``(port, process)``.

    The server is stopped on the way out, whatever happened, and the exit is
    asserted (the process exited, no process of its group is left).
    """
    port = free_port()
    with open(log, "wb") as output:
        proc = subprocess.Popen(
            server_command(kind, port, app, cwd),
            cwd=cwd,
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


# The application the servers run (``servers:application``).

StartResponse = Callable[..., Any]

_LEFT_BODY = b"the application's body, left on a 304"
_CALLBACK_BODY = b"a body set by a callback"


def _not_modified(response: Response) -> None:
    response.status = "304 Not Modified"  # and the application's body stays


def _gzip(response: Response) -> None:
    response.encode_content("gzip")


def _set_body(response: Response) -> None:
    response.body = _CALLBACK_BODY


def _mark(response: Response) -> None:
    response.headers["X-Deferred"] = "yes"


# path: (status, body, Content-Length, callback)
_BODILESS = {
    "/bodiless/304": ("200 OK", _LEFT_BODY, len(_LEFT_BODY), _not_modified),
    "/bodiless/204-gzip": ("204 No Content", b"", None, _gzip),
    # What a HEAD-aware application sends: no body, the length a GET would have.
    # The callback's body has that length, so the length stays and the servers
    # keep the connection alive.
    "/bodiless/head": ("200 OK", b"", len(_CALLBACK_BODY), _set_body),
}


def _bodiless(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path in _BODILESS:
        status, body, length, callback = _BODILESS[path]
    else:  # /bodiless/plain
        body = f"own body of {environ.get('QUERY_STRING')}".encode()
        status, length, callback = "200 OK", len(body), _mark
    after_this_request(callback)
    headers = [("Content-Type", "text/plain")]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    start_response(status, headers)
    return [body] if body else []


_closed_files: list[str] = []  # list.append is atomic: no lock needed across server threads


def _file(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    pid = str(os.getpid())
    if environ.get("PATH_INFO") == "/file/pid":
        body = f"{pid} {len(_closed_files)}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    path = os.environ["DEFERWARE_SERVED_FILE"]
    call_on_close(functools.partial(_closed_files.append, path))
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(os.path.getsize(path)))]
    start_response("200 OK", [*headers, ("X-Worker-Pid", pid)])
    file_wrapper: Callable[[Any], Iterable[bytes]] = environ.get("wsgi.file_wrapper", _itself)
    # Not closed here: the server closes the body, and so the file.
    return file_wrapper(open(path, "rb"))


def _itself(file: Any) -> Any:
    return file


_bodiless_app = DeferMiddleware(_bodiless)
_file_app = DeferMiddleware(_file)


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Route to the applications above, and to ``isolation_app`` for the rest."""
    path = environ.get("PATH_INFO", "")
    if path.startswith("/bodiless/"):
        return _bodiless_app(environ, start_response)
    if path.startswith("/file"):
        return _file_app(environ, start_response)
    return isolation_application(environ, start_response)
