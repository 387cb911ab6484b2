"""Sphinx configuration for deferware's documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the checkout's deferware, installed or not

import deferware  # noqa: E402

project = "deferware"
author = "The deferware authors"
copyright = "The deferware authors, MIT License"
release = deferware.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["_build", "_generated"]
root_doc = "index"
default_role = "literal"
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# deferware.django imports Django, which the docs extra does not install.
autodoc_mock_imports = ["django", "asgiref"]

html_theme = "alabaster"
html_title = f"deferware {release}"
html_theme_options = {
    "description": "Change a response that does not exist yet, in any WSGI application.",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}


# The performance table is generated from the benchmark's JSON output at build
# time, so the page never shows figures that no run produced.
PERFORMANCE_NOTE = """\
.. note::

   No benchmark results were found when these pages were built
   (``benchmarks/report.py`` with ``render_rst()``, and ``benchmarks/results.json``).
   Run the benchmark as described above, then build the documentation again to
   see the table here.
"""


def render_performance_table() -> str:
    """The table from ``benchmarks/report.py``'s ``render_rst(json_path)``, or a note."""
    report = ROOT / "benchmarks" / "report.py"
    results = ROOT / "benchmarks" / "results.json"
    if not (report.is_file() and results.is_file()):
        return PERFORMANCE_NOTE
    spec = importlib.util.spec_from_file_location("deferware_benchmark_report", report)
    if spec is None or spec.loader is None:
        return PERFORMANCE_NOTE
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(report.parent))  # report.py may import its neighbours
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(report.parent))
    render_rst = getattr(module, "render_rst", None)
    if not callable(render_rst):
        return PERFORMANCE_NOTE
    return str(render_rst(results)).rstrip("\n") + "\n"


def write_generated(name: str, text: str) -> None:
    """Write docs/_generated/NAME, leaving an unchanged file alone (no rebuild)."""
    target = DOCS / "_generated" / name
    target.parent.mkdir(exist_ok=True)
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


write_generated("performance.inc", render_performance_table())
