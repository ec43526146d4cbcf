"""Real database and directory servers, started by the test suite on loopback.

Each server is started once per test session in a temporary directory that its system account
can reach, seeded by the tests that use it, and stopped at the end (see
:mod:`mailmaps.testing.servers`).  Nothing here is skipped when a server is missing: CI installs
the Debian packages (``.ci/run``), and a machine without them fails these tests.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmaps.testing.servers import MariaDB, PostgreSQL


def _server_dir(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"mailmaps-{prefix}-"))
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A private MariaDB server with the database ``mailmaps`` and the reader ``postfix``."""
    root = _server_dir("mariadb")
    try:
        with MariaDB(root / "db") as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgreSQL]:
    """A private PostgreSQL server with the database ``mailmaps`` and the reader ``postfix``."""
    root = _server_dir("pgsql")
    try:
        with PostgreSQL(root / "db") as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (the kernel completes them) and never says
    anything: a firewalled or hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temporary directory that every system account can read (pytest's is root's only)."""
    root = _server_dir("conf")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
