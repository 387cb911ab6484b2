"""The documentation shows the runnable files in ``examples/`` and ``demo/``, never a copy.

Every example is included by a page of the Sphinx site (``docs/``) with
``literalinclude``, and no page nor README.rst repeats an example's code in a
code block of its own. The examples themselves run in the framework tests
(test_django.py, test_pyramid.py, test_bottle.py, test_flask.py, test_threads.py,
test_testing_helper_examples.py, and the plain WSGI one below), so the documented
code cannot rot. The README, which is also the package's index page, stays short
and says nothing that goes stale on upload.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import textwrap
from pathlib import Path

import pytest
from webtest import TestApp

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = sorted([*EXAMPLES_DIR.glob("*.py"), *EXAMPLES_DIR.glob("*.ini")])
PAGES = sorted((ROOT / "docs").rglob("*.rst"))
README = ROOT / "README.rst"

_LITERALINCLUDE = re.compile(r"^\.\. literalinclude:: (\S+)", re.MULTILINE)
# A literal block: "::" at the end of a line (also ".. code-block:: x"), then indented lines.
_LITERAL_BLOCK = re.compile(r"::(?: \w+)?\n\n((?:(?:[ \t]+.*)?\n)+)")

if str(EXAMPLES_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLES_DIR))


def included_files() -> dict[Path, list[Path]]:
    """Each file a docs page literalincludes, with the pages that include it."""
    found: dict[Path, list[Path]] = {}
    for page in PAGES:
        for target in _LITERALINCLUDE.findall(page.read_text()):
            found.setdefault((page.parent / target).resolve(), []).append(page)
    return found


def test_the_examples_are_all_there():
    assert {path.name for path in EXAMPLES} == {
        "bottle_example.py",
        "django_example.py",
        "flask_example.py",
        "pyramid_example.ini",
        "pyramid_example.py",
        "unit_testing.py",
        "worker_threads.py",
        "wsgi_example.py",
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_is_included_by_a_docs_page(example):
    assert example.resolve() in included_files(), (
        f"No page under docs/ shows examples/{example.name}: include it with "
        f"'.. literalinclude:: <relative path to examples/{example.name}>'."
    )


def test_docs_include_only_tested_files():
    # What a page includes is run by the tests: an example, or the demo (test_demo.py).
    # Or the Django site test_django_project.py runs under the test Client and real servers.
    site = ROOT / "tests" / "djangoproject"
    allowed = {path.resolve() for path in EXAMPLES} | {
        (ROOT / "demo" / "demo.ini").resolve(),
        (ROOT / "demo" / "language.py").resolve(),
        *(path.resolve() for path in site.rglob("*.py")),
    }
    for target, pages in included_files().items():
        assert target.is_file(), f"{[str(page) for page in pages]} include a missing file {target}"
        assert target in allowed, f"{[str(page) for page in pages]} include {target}, which no test runs"


def _windows(lines: list[str], size: int = 4) -> set[tuple[str, ...]]:
    meaningful = [line.strip() for line in lines if line.strip()]
    return {tuple(meaningful[i : i + size]) for i in range(len(meaningful) - size + 1)}


@pytest.mark.parametrize("document", [README, *PAGES], ids=lambda path: str(path.relative_to(ROOT)))
def test_no_document_pastes_a_copy_of_an_example(document):
    shown: set[tuple[str, ...]] = set()
    for block in _LITERAL_BLOCK.findall(document.read_text()):
        shown |= _windows(textwrap.dedent(block).splitlines())
    for example in EXAMPLES:
        copied = shown & _windows(example.read_text().splitlines())
        assert not copied, (
            f"{document.relative_to(ROOT)} repeats code of examples/{example.name} "
            f"({' / '.join(sorted(copied)[0])}): include the file with literalinclude instead."
        )


def test_guarantees_page_names_tests_that_exist():
    text = (ROOT / "docs" / "guarantees.rst").read_text()
    named = set(re.findall(r"``(test_\w+)``", text))
    files = set(re.findall(r"\b(test_\w+\.py)\b", text))
    assert named and files
    defined = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", path.read_text(), re.MULTILINE))
    assert sorted(named - defined) == [], "docs/guarantees.rst names tests that do not exist"
    assert sorted(name for name in files if not (ROOT / "tests" / name).is_file()) == []


def test_readme_fits_the_package_page():
    text = README.read_text()
    assert len(text) <= 8000, f"README.rst has {len(text)} characters; keep it at 8,000 or fewer"
    assert "not on PyPI" not in text
    assert "unreleased" not in text.lower()
    # No commit hashes: they go stale on upload.
    assert not re.search(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b", text)


def test_readme_points_to_docs_pages_that_exist():
    pages = re.findall(r"``(docs/[\w/]+\.rst)``", README.read_text())
    assert len(pages) >= 7  # one per framework, and more
    assert [page for page in pages if not (ROOT / page).is_file()] == []


# The plain WSGI example (the frameworks' examples run in their own test files).


@pytest.fixture
def wsgi_example():
    return importlib.import_module("wsgi_example")


def test_plain_wsgi_example_sets_the_cookie_once(wsgi_example, caplog):
    app = TestApp(wsgi_example.application)
    with caplog.at_level(logging.INFO, logger="wsgi_example"):
        first = app.get("/", headers={"Accept-Language": "fr;q=0.5, de"})
    assert first.text == "Hallo"
    assert first.headers["Set-Cookie"].startswith("user_lang=de;")
    assert "guessed de for a new visitor" in caplog.messages

    second = app.get("/", headers={"Accept-Language": "fr"})  # TestApp sends the cookie back
    assert second.text == "Hallo"
    assert "Set-Cookie" not in second.headers


def test_plain_wsgi_example_ignores_an_unknown_cookie_value(wsgi_example):
    app = TestApp(wsgi_example.application)
    response = app.get("/", headers={"Cookie": "user_lang=xx", "Accept-Language": "fr"})
    assert response.text == "Bonjour"
    assert response.headers["Set-Cookie"].startswith("user_lang=fr;")
