"""Serve demo/demo.ini: ``python -m demo`` (127.0.0.1:8080, from the ini's
``[server:main]``), or ``python -m demo --port PORT`` for another port."""

from __future__ import annotations

import argparse
import os

import waitress
from paste.deploy import loadapp, loadserver

CONFIG = "config:" + os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.ini")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT instead of the ini's address")
    args = parser.parse_args()
    app = loadapp(CONFIG)  # the [pipeline:main]: deferware in front of the language app
    port = 8080 if args.port is None else args.port
    print(f"deferware demo on http://127.0.0.1:{port}/  (Ctrl-C stops it). Try:", flush=True)
    print(f"  curl -i -H 'Accept-Language: de' http://127.0.0.1:{port}/   # sets user_lang=de", flush=True)
    print(f"  curl -i -H 'Cookie: user_lang=de' http://127.0.0.1:{port}/  # no Set-Cookie", flush=True)
    if args.port is None:
        loadserver(CONFIG)(app)
    else:
        waitress.serve(app, listen=f"127.0.0.1:{args.port}")


if __name__ == "__main__":
    main()
