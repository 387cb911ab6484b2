"""The documentation's examples are the files in ``examples/``, verbatim.

Every ``examples/*.py`` (and the Pyramid ini) must appear, exactly, as a
``.. code-block::`` in README.rst and in docs/frameworks.rst, and every code block
of docs/frameworks.rst must be one of them. The examples themselves are run by the
framework tests (test_django.py, test_pyramid.py, test_bottle.py, test_flask.py,
test_threads.py, test_testing_helper_examples.py), so the documented code cannot rot.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = [*sorted(EXAMPLES_DIR.glob("*.py")), EXAMPLES_DIR / "pyramid_example.ini"]
LANGUAGES = {".py": "python", ".ini": "ini"}
DOCUMENTS = ["README.rst", "docs/frameworks.rst"]

_BLOCK = re.compile(r"^\.\. code-block:: (\w+)\n\n((?:(?:    .*)?\n)+)", re.MULTILINE)


def code_block(example: Path) -> str:
    """The reStructuredText code block that shows *example* exactly."""
    return f".. code-block:: {LANGUAGES[example.suffix]}\n\n" + textwrap.indent(example.read_text(), "    ")


def test_the_examples_are_all_there():
    assert {path.name for path in EXAMPLES} == {
        "bottle_example.py",
        "django_example.py",
        "flask_example.py",
        "pyramid_example.ini",
        "pyramid_example.py",
        "unit_testing.py",
        "worker_threads.py",
    }


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_appears_verbatim_as_a_code_block(document, example):
    text = (ROOT / document).read_text()
    assert code_block(example) in text, (
        f"{document} does not show examples/{example.name} exactly; paste it as a "
        f"'.. code-block:: {LANGUAGES[example.suffix]}' indented by 4 spaces "
        "(docs/frameworks.rst holds every example block)."
    )


def test_every_code_block_in_the_frameworks_page_is_an_example():
    blocks = _BLOCK.findall((ROOT / "docs/frameworks.rst").read_text())
    examples = {(LANGUAGES[path.suffix], path.read_text()) for path in EXAMPLES}
    shown = {(language, textwrap.dedent(body).rstrip("\n") + "\n") for language, body in blocks}
    assert shown == examples
    assert len(blocks) == len(EXAMPLES)
