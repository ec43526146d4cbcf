"""What the Berkeley DB and cdb backend tests share: sample entries, queries and helpers."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from mailmaps.maps import create_table, open_table
from mailmaps.table import OpenOptions
from tests.conftest import VECTORS

UTIL = VECTORS / "src" / "util"

#: Entries as a postmap source would have them: keys with quotes, spaces, UTF-8, upper case.
ENTRIES: list[tuple[str, str]] = [
    ("Plain@Example.COM", "v1"),
    ('"quoted key"@example.com', "v2 with spaces"),
    ('"a b"', "c d"),
    ("Ünïcödé@Exämple.org", "ü-value"),
    ("Straße@x.de", "strasse"),
    ("UPPER", "UP"),
    ("@domain.example", "catch-all"),
    ("key:with=punct", "a,b;c"),
]

#: Lookups: every key in other cases, and misses.
QUERIES: list[str] = [
    "plain@example.com",
    "PLAIN@EXAMPLE.COM",
    '"quoted key"@example.com',
    '"QUOTED KEY"@EXAMPLE.COM',
    '"a b"',
    '"A B"',
    "ünïcödé@exämple.org",
    "ÜNÏCÖDÉ@EXÄMPLE.ORG",
    "STRASSE@X.DE",
    "straße@x.de",
    "upper",
    "@DOMAIN.example",
    "key:with=punct",
    "missing@example.com",
    "a b",
]


# -- helpers ------------------------------------------------------------------------------------


def backdate(path: Path) -> None:
    """Make ``path`` older than Postfix's "changed in the last seconds" windows."""
    old = time.time() - 120
    os.utime(path, (old, old))


def write_source(path: Path, entries: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{k} {v}\n" for k, v in entries), encoding="utf-8")
    backdate(path)
    return path


def build(spec: str, entries: list[tuple[str, str]], options: OpenOptions | None = None) -> None:
    with create_table(spec, options) as builder:
        for key, value in entries:
            builder.add(key, value)


def dict_open(
    spec: str, commands: list[str], caplog: pytest.LogCaptureFixture, **options: bool
) -> str:
    """What Postfix's dict_open test driver prints for ``get`` commands (warnings first)."""
    caplog.set_level(logging.WARNING, logger="mailmaps")
    table = open_table(spec, OpenOptions(fold=False, **options))  # type: ignore[arg-type]
    out = [f"./dict_open: warning: {r.getMessage()}" for r in caplog.records]
    out.append("owner=untrusted (uid=USER)")
    for command in commands:
        out.append(f"> {command}")
        key = command.removeprefix("get ")
        value = table.lookup(key)
        out.append(f"{key}: not found" if value is None else f"{key}={value}")
    return "\n".join(out) + "\n"


def vector_commands(name: str) -> list[str]:
    """The lines of a dict_open vector's ``.in`` file in src/util."""
    return (UTIL / name).read_text().splitlines()


def build_with_and_without_c(
    map_type: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: bytes,
    options: OpenOptions,
) -> tuple[Path, Path]:
    """Build ``source`` through the optional C writer of uniform sources (``c``) and through
    the Python parser and writer (``py``); return the two table names.  The C writer must
    take the source (and may hand it back at commit, when a line is not uniform)."""
    from mailmaps.backends._indexed import IndexedBuilder
    from mailmaps.registry import backend_class
    from mailmaps.source import parse_postmap_source

    table_cls = backend_class(map_type)
    assert table_cls.source_writer is not None  # built with the extension
    with create_table(f"{map_type}:{tmp_path / 'c'}", options) as builder:
        assert isinstance(builder, IndexedBuilder)
        assert builder.add_source(source, "src")
    monkeypatch.setattr(table_cls, "source_writer", None)
    with create_table(f"{map_type}:{tmp_path / 'py'}", options) as builder:
        assert isinstance(builder, IndexedBuilder)
        assert not builder.add_source(source, "src")
        builder.add_many(parse_postmap_source(source, "src", utf8=True), "src")
    return tmp_path / "c", tmp_path / "py"
