"""Fixtures shared by the differential tests that run a real Postfix."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def postfix_root() -> Iterator[Path]:
    """A directory the postfix user can reach (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="mailmaps-postfix-"))
    root.chmod(0o755)
    try:
        yield root / "pf"
    finally:
        shutil.rmtree(root, ignore_errors=True)
