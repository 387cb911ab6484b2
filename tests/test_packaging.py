"""What the installed distribution says about itself."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

import deferware
import deferware.paste


def test_runtime_requirements_are_webob_only():
    requirements = importlib.metadata.requires("deferware") or []
    runtime = [requirement for requirement in requirements if "extra ==" not in requirement]

    assert [re.split(r"[<>=!~ ;\[]", requirement)[0].lower() for requirement in runtime] == ["webob"]


def test_version_matches_the_package():
    assert importlib.metadata.version("deferware") == deferware.__version__


def test_paste_filter_factory_entry_point_resolves():
    ours = importlib.metadata.distribution("deferware").entry_points
    [entry_point] = ours.select(group="paste.filter_factory")

    assert entry_point.name == "main"
    assert entry_point.value == "deferware.paste:filter_factory"
    assert entry_point.load() is deferware.paste.filter_factory


def test_py_typed_is_shipped():
    assert importlib.resources.files("deferware").joinpath("py.typed").is_file()
    files = importlib.metadata.distribution("deferware").files or []
    assert "deferware/py.typed" in [file.as_posix() for file in files]


BUILD_SDIST = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"


def test_sdist_carries_what_its_tests_need(tmp_path):
    # An sdist whose tests cannot even be collected is a broken release: build one
    # from a copy of the source tree and collect its test suite.
    source = pathlib.Path(__file__).resolve().parent.parent
    if not (source / "setup.cfg").is_file():
        pytest.skip("not running from a source tree")
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns(
        "__pycache__", "*.egg-info", ".*", "build", "dist", "results", "*.pyc", "_build", "_generated"
    )
    for name in ("deferware", "tests", "examples", "demo", "benchmarks", "docs"):
        shutil.copytree(source / name, tree / name, ignore=ignore)
    for name in (
        "setup.cfg",
        "pyproject.toml",
        "MANIFEST.in",
        "README.rst",
        "CHANGES.rst",
        "LICENSE",
        "noxfile.py",
        ".readthedocs.yaml",
    ):
        if (source / name).is_file():
            shutil.copy(source / name, tree / name)
    built = subprocess.run(
        [sys.executable, "-c", BUILD_SDIST, str(tmp_path / "dist")],
        cwd=tree, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    with tarfile.open(tmp_path / "dist" / built.stdout.split()[-1]) as sdist:
        # extractall(filter=) exists from Python 3.10.12 and 3.11.4 (Debian 12's 3.11.2 lacks it).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        sdist.extractall(tmp_path / "unpacked", **safe)
    [unpacked] = (tmp_path / "unpacked").iterdir()

    wanted = {path.relative_to(tree).as_posix() for path in (tree / "tests").rglob("*") if path.is_file()}
    shipped = {
        path.relative_to(unpacked).as_posix() for path in (unpacked / "tests").rglob("*") if path.is_file()
    }
    assert wanted <= shipped, sorted(wanted - shipped)
    for name in ("examples/flask_example.py", "demo/demo.ini", "benchmarks/bench.py", "docs/conf.py"):
        assert (unpacked / name).is_file(), name

    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=unpacked, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
