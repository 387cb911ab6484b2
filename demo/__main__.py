"""Serve demo/demo.ini with waitress: ``python -m demo [--host HOST] [--port PORT]``.

The address defaults to the ini's ``[server:main] listen`` (127.0.0.1:8080); port 0
picks a free port. The URL is printed once the server is listening, so a script
may connect as soon as it has read the first line.
"""

from __future__ import annotations

import argparse
import configparser
import os
from typing import Any

import waitress
from paste.deploy import loadapp

INI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.ini")


def ini_address() -> tuple[str, int]:
    """The host and port of the ini's ``[server:main] listen = HOST:PORT``."""
    parser = configparser.ConfigParser()
    parser.read(INI)
    host, _, port = parser["server:main"]["listen"].rpartition(":")
    return host, int(port)


def listening_on(server: Any) -> list[tuple[str, int]]:
    """The addresses a waitress server listens on (one, or several for a name such
    as ``localhost`` that resolves to more than one address)."""
    if hasattr(server, "effective_listen"):
        return [(str(host), int(port)) for host, port, *_ in server.effective_listen]
    return [(str(server.effective_host), int(server.effective_port))]


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def main() -> None:
    default_host, default_port = ini_address()
    parser = argparse.ArgumentParser(
        prog="python -m demo", description="Serve the deferware demo (demo/demo.ini) with waitress."
    )
    parser.add_argument("--host", default=default_host, help=f"address to bind (default {default_host})")
    parser.add_argument("--port", type=int, default=default_port, help=f"port (default {default_port})")
    args = parser.parse_args()

    app = loadapp("config:" + INI)  # the [pipeline:main]: deferware in front of the language app
    server = waitress.create_server(app, host=args.host, port=args.port)  # binds and listens
    address = url(*listening_on(server)[0])
    print(f"deferware demo on {address}  (Ctrl-C stops it). Try:", flush=True)
    print(f"  curl -i -H 'Accept-Language: de' {address}   # sets user_lang=de", flush=True)
    print(f"  curl -i -H 'Cookie: user_lang=de' {address}  # no Set-Cookie", flush=True)
    server.run()  # returns on Ctrl-C


if __name__ == "__main__":
    main()
