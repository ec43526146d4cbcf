"""Development sessions for mailmaps: ``nox`` runs tests, lint, mypy and docs; ``nox -s bench``.

Each session installs what it needs into its own virtualenv under ``.nox/`` (reused between runs).
Requirement strings come from the ``dev`` extra in ``pyproject.toml``: versions live in one place.

``scripts/test-all`` instead installs everything once into ``.venv`` and runs
``nox --no-venv --no-install``: the sessions then run in that environment and install nothing,
so the Berkeley DB bindings are compiled once, not once per session.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent

nox.needs_version = ">=2024.4.15"
nox.options.sessions = ["tests", "lint", "mypy", "docs"]
nox.options.reuse_venv = "yes"

#: The package's own extras that the test suite exercises.
PACKAGE = ".[lmdb,bdb,cdb,pcre,mysql,sql,ldap,progress]"
#: Everything ruff checks and formats.
LINT_PATHS = ("src", "tests", "noxfile.py", "benchmarks", "docs")
#: The ``berkeleydb`` package compiles against the system's Berkeley DB (Debian: libdb-dev).
BUILD_ENV = {"BERKELEYDB_DIR": os.environ.get("BERKELEYDB_DIR", "/usr")}


def _canonical(name: str) -> str:
    """Normalise a distribution name as PEP 503 does (``Pure_CDB`` -> ``pure-cdb``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dev_requirements() -> dict[str, str]:
    """Map each distribution named in the ``dev`` extra to its requirement string."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        extras: dict[str, list[str]] = tomllib.load(file)["project"]["optional-dependencies"]
    found: dict[str, str] = {}
    for requirement in extras["dev"]:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match is not None:
            found[_canonical(match.group())] = requirement
    return found


DEV_REQUIREMENTS = _dev_requirements()


def dev(*names: str) -> list[str]:
    """Return the ``dev`` extra's requirement strings for the distributions ``names``."""
    return [DEV_REQUIREMENTS[_canonical(name)] for name in names]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with pytest; arguments after ``--`` go to pytest."""
    session.install("-e", PACKAGE, *dev("pure-cdb", "pytest", "hypothesis"), env=BUILD_ENV)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff (configured in pyproject.toml)."""
    session.install(*dev("ruff"))
    session.run("ruff", "check", *LINT_PATHS)
    session.run("ruff", "format", "--check", *LINT_PATHS)


@nox.session
def mypy(session: nox.Session) -> None:
    """Type-check ``src``, ``tests``, ``noxfile.py`` and ``benchmarks`` with ``mypy --strict``."""
    session.install(
        "-e",
        PACKAGE,
        *dev("mypy", "nox", "pure-cdb", "pytest", "hypothesis"),
        env=BUILD_ENV,
    )
    # The files and the strictness come from [tool.mypy] in pyproject.toml.
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML documentation; any Sphinx warning fails the build."""
    session.install("-e", ".[docs]")
    out = ROOT / "docs" / "_build" / "html"
    shutil.rmtree(out, ignore_errors=True)
    # -E: read every page afresh, so warnings from unchanged pages are not hidden on re-runs.
    session.run(
        "sphinx-build", "-W", "--keep-going", "-E", "-b", "html", "docs", str(out), *session.posargs
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks (``benchmarks/run.py`` for indexed tables, then
    ``benchmarks/patterns.py`` for regexp/pcre, ``benchmarks/resolve.py`` for address
    resolution, ``benchmarks/access.py`` for access decisions, ``benchmarks/servers.py`` for
    SQL and LDAP tables); arguments after ``--`` go to run.py."""
    session.install("-e", PACKAGE, *dev("pure-cdb"), env=BUILD_ENV)
    session.run("python", "benchmarks/run.py", *session.posargs)
    session.run("python", "benchmarks/patterns.py")
    session.run("python", "benchmarks/resolve.py")
    session.run("python", "benchmarks/access.py")
    session.run("python", "benchmarks/servers.py")
