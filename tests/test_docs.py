"""The documentation's Python examples run, and do what the pages say they do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: Pages whose examples are self-contained (others show /etc/postfix paths).
PAGES = [
    DOCS / name
    for name in (
        "patterns.md",
        "cidr.md",
        "configuration.md",
        "resolution.md",
        "access.md",
        "sqlite.md",
        "mysql.md",
        "pgsql.md",
        "ldap.md",
        "tcp.md",
        "composite.md",
    )
]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILMAPS_CACHE_DIR", str(tmp_path / "cache"))
    namespace: dict[str, object] = {}
    for block in BLOCK.findall(page.read_text()):
        exec(compile(block, str(page), "exec"), namespace)
