"""Tests, lint and docs for every supported Python found on this machine.

``nox`` runs them all; ``nox -s tests-3.12`` one version; ``nox -s lint docs`` the
rest. A Python that is not installed is skipped, not an error (also under CI).
pyenv keeps its versions under ``$PYENV_ROOT/versions/X.Y.Z/bin``, where a plain
PATH lookup only finds pyenv's shims (which refuse a version that is not
selected), so those interpreters are linked into ``.nox/interpreters`` first.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
ROOT = Path(__file__).resolve().parent

nox.options.sessions = ["tests", "lint", "docs"]
nox.options.error_on_missing_interpreters = False
nox.options.default_venv_backend = "virtualenv"


def _link_pyenv_interpreters() -> None:
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    links = ROOT / ".nox" / "interpreters"
    for version in PYTHONS:
        # The newest plain release of each version (3.12.1 over 3.12.0; not 3.13.0t).
        found = sorted(
            (path for path in versions.glob(f"{version}.*/bin/python{version}") if _release(path)),
            key=_release,
        )
        if found:
            links.mkdir(parents=True, exist_ok=True)
            link = links / f"python{version}"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(found[-1])
    if links.is_dir():
        os.environ["PATH"] = f"{links}{os.pathsep}{os.environ.get('PATH', '')}"


def _release(interpreter: Path) -> tuple[int, ...]:
    """(3, 12, 1) for .../versions/3.12.1/bin/python3.12; () for other builds."""
    name = interpreter.parent.parent.name
    return tuple(map(int, name.split("."))) if re.fullmatch(r"\d+\.\d+\.\d+", name) else ()


_link_pyenv_interpreters()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite (arguments go to pytest: ``nox -s tests-3.12 -- -x``)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy (strict, on the package)."""
    session.install("-e", ".[typing]", "ruff>=0.5", "mypy>=1.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation, with warnings as errors (HTML in docs/_build/html)."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
